package storage

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"reflect"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// miniScriptCases are scripts that exercise what the hook does for
// miniredis: KEYS and ARGV, every reply conversion both ways, redis.call
// and redis.pcall errors, the globals protection, the libraries.
var miniScriptCases = []struct {
	name, src string
	keys      []string
	args      []any
}{
	{"keys and args", `return {#KEYS, #ARGV, KEYS[1], ARGV[2]}`, []string{"a", "b"}, []any{"x", 7, 2.5}},
	{"reply kinds", `return {1, "two", {3, false, true}, 4.7, -2.2, nil, 5}`, nil, nil},
	{"number", `return 3.99`, nil, nil},
	{"false", `return false`, nil, nil},
	{"true", `return true`, nil, nil},
	{"nothing", `return`, nil, nil},
	{"status", `return redis.status_reply("FINE")`, nil, nil},
	{"ok table", `return {ok="fine"}`, nil, nil},
	{"err table", `return {err="ERR bad thing"}`, nil, nil},
	{"error_reply", `return redis.error_reply("MY thing")`, nil, nil},
	{"error_reply one word", `return redis.error_reply("-oops")`, nil, nil},
	{"writes and reads", `
		redis.call('SET', KEYS[1], ARGV[1])
		redis.call('SADD', KEYS[2], 1, 2.5, 'x')
		redis.call('ZADD', KEYS[3], 1.5, 'm', 2, 'n')
		redis.call('HSET', KEYS[4], 'f', 'v', 'g', 7)
		redis.call('RPUSH', KEYS[5], 'a', 'b')
		return {redis.call('GET', KEYS[1]), redis.call('SMEMBERS', KEYS[2]),
			redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES'), redis.call('HGETALL', KEYS[4]),
			redis.call('LRANGE', KEYS[5], 0, -1), redis.call('INCR', 'n'), redis.call('EXISTS', KEYS[1], 'nope'),
			redis.call('GET', 'missing') == false}`,
		[]string{"s", "set", "z", "h", "l"}, []any{"value"}},
	{"status from a call", `return redis.call('SET', 'k', 'v')`, nil, nil},
	{"status table in an array", `return {redis.call('TYPE', 'k'), redis.call('PING')}`, nil, nil},
	{"call error", `redis.call('SET', 'w', 'x'); return redis.call('SADD', 'w', 'y')`, nil, nil},
	{"pcall error", `redis.call('SET', 'w', 'x'); local r = redis.pcall('SADD', 'w', 'y'); return {r.err ~= nil, r}`, nil, nil},
	{"unknown command", `return redis.call('NOSUCH', 'a')`, nil, nil},
	{"pcall unknown command", `return redis.pcall('NOSUCH', 'a')`, nil, nil},
	{"no command", `return redis.call()`, nil, nil},
	{"bad argument", `return redis.call('GET', {})`, nil, nil},
	{"create global", `x = 1; return 1`, nil, nil},
	{"read undeclared global", `return y`, nil, nil},
	{"runtime error", `error("boom")`, nil, nil},
	{"libraries", `return {string.format('%05d', 42), math.floor(2.7), table.concat({'a','b'}, ','), redis.sha1hex('abc'),
		cjson.encode({1,2}), tostring(os.clock()), type(debug), type(coroutine.create)}`, nil, nil},
	{"nested eval", `return redis.call('EVAL', 'return 1', 0)`, nil, nil},
	{"select inside", `redis.call('SELECT', 1); redis.call('SET', 'in1', 'v'); return redis.call('DBSIZE')`, nil, nil},
}

// TestMiniScripts: every case answers the same through the hook as through
// miniredis' own EVALSHA, and leaves the same store; the hook runs the
// cases (it is not quietly bypassed); calls it must not take (MULTI, an
// unknown script, EVAL) still answer as miniredis does.
func TestMiniScripts(t *testing.T) {
	if _, ok := connLayout(); !ok {
		t.Fatal("miniredis' connection context is not the layout minilua.go reads: update it for this miniredis")
	}
	ctx := context.Background()
	start := func(hooked bool) (*miniredis.Miniredis, *redis.Client, *miniScripts) {
		m := miniredis.RunT(t)
		var ms *miniScripts
		if hooked {
			ms = newMiniScripts(m)
			if ms == nil {
				t.Fatal("newMiniScripts: nil")
			}
			ms.protos = maps.Clone(ms.protos)
			for _, tc := range miniScriptCases {
				p, err := compileLua(tc.src)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				ms.protos[sha1Hex(tc.src)] = p
			}
			m.Server().SetPreHook(ms.hook)
		}
		c := redis.NewClient(&redis.Options{Addr: m.Addr(), Protocol: 2, DisableIdentity: true})
		t.Cleanup(func() { c.Close() })
		return m, c, ms
	}
	plainM, plain, _ := start(false)
	hookedM, hooked, ms := start(true)
	for _, tc := range miniScriptCases {
		sha, err := plain.ScriptLoad(ctx, tc.src).Result()
		if err != nil {
			t.Fatalf("%s: SCRIPT LOAD: %v", tc.name, err)
		}
		before := ms.runs.Load()
		want, wantErr := plain.EvalSha(ctx, sha, tc.keys, tc.args...).Result()
		got, gotErr := hooked.EvalSha(ctx, sha, tc.keys, tc.args...).Result()
		if !reflect.DeepEqual(got, want) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Errorf("%s: hook answered %#v, %v; miniredis %#v, %v", tc.name, got, gotErr, want, wantErr)
		}
		if n := ms.runs.Load() - before; n != 1 {
			t.Errorf("%s: the hook ran %d scripts, want 1", tc.name, n)
		}
		for db := range 2 {
			plainM.Select(db)
			hookedM.Select(db)
			if g, w := hookedM.Dump(), plainM.Dump(); g != w {
				t.Errorf("%s: db %d after the hook: %v; after miniredis: %v", tc.name, db, g, w)
			}
		}
		plainM.Select(0)
		hookedM.Select(0)
	}

	// What the hook leaves to miniredis.
	src := miniScriptCases[0].src
	sha := sha1Hex(src)
	for _, c := range []*redis.Client{plain, hooked} {
		c.ScriptFlush(ctx)
	}
	before := ms.runs.Load()
	for _, tc := range []struct {
		name string
		run  func(c *redis.Client) (any, error)
	}{
		{"MULTI", func(c *redis.Client) (any, error) {
			cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.EvalSha(ctx, sha, []string{"a"}, "b")
				p.Incr(ctx, "n")
				return nil
			})
			var out []any
			for _, cmd := range cmds {
				out = append(out, fmt.Sprint(cmd))
			}
			return out, err
		}},
		{"unknown script", func(c *redis.Client) (any, error) {
			return c.EvalSha(ctx, sha1Hex("return 'not registered'"), nil).Result()
		}},
		{"EVAL", func(c *redis.Client) (any, error) { return c.Eval(ctx, src, []string{"k"}, "v").Result() }},
	} {
		want, wantErr := tc.run(plain)
		got, gotErr := tc.run(hooked)
		if !reflect.DeepEqual(got, want) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Errorf("%s: hooked miniredis answered %#v, %v; miniredis %#v, %v", tc.name, got, gotErr, want, wantErr)
		}
	}
	if n := ms.runs.Load() - before; n != 0 {
		t.Errorf("the hook ran %d scripts it should have left to miniredis", n)
	}
}

// TestStoreScriptsRunByHook: the embedded store's announces run through
// the hook, also after a rebuild swapped the instance.
func TestStoreScriptsRunByHook(t *testing.T) {
	e := newEmbedded(t, nil)
	h := hash(0x42)
	for round := range 2 {
		ms := e.store.emb.scripts
		if ms == nil {
			t.Fatalf("round %d: the embedded store has no script hook", round)
		}
		before := ms.runs.Load()
		mustAnnounce(t, e.store, ann(h, fmt.Sprintf("10.0.0.%d:1", round+1), "r1", EventStarted, 100))
		mustAnnounce(t, e.store, ann(h, fmt.Sprintf("10.0.0.%d:1", round+1), "r1", EventStopped, 100))
		if n := ms.runs.Load() - before; n != 2 {
			t.Errorf("round %d: the hook ran %d scripts for 2 announces", round, n)
		}
		rebuilds := e.store.SnapshotStatus().Rebuilds
		if err := e.store.Snapshot(context.Background()); err != nil {
			t.Fatal(err)
		}
		if e.store.SnapshotStatus().Rebuilds != rebuilds+1 {
			t.Fatalf("round %d: the snapshot did not rebuild the store", round)
		}
	}
}

// TestStoreScriptsCompile: every script the store runs compiles for the
// hook.
func TestStoreScriptsCompile(t *testing.T) {
	protos, err := compiledScripts()
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range []*redis.Script{scriptAnnounce, scriptExpire, scriptDeactivate, scriptActivate, scriptTimeline, scriptPrune} {
		if _, ok := protos[sc.Hash()]; !ok {
			t.Errorf("script %s is not among the hook's", sc.Hash())
		}
	}
}

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
