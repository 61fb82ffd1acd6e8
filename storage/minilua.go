package storage

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/alicebob/miniredis/v2"
	luajson "github.com/alicebob/miniredis/v2/gopher-json"
	"github.com/alicebob/miniredis/v2/server"
	lua "github.com/yuin/gopher-lua"
	"github.com/yuin/gopher-lua/parse"
)

// miniredis runs every EVALSHA in a new Lua state: it opens the standard
// libraries, builds the redis module and runs its globals protection each
// time, and every redis.call inside allocates a fresh pair of 4 KB buffers
// to render the command's reply as RESP and parse it back. On an announce
// that setup was most of the garbage and a fifth of the CPU.
//
// So the embedded store answers EVALSHA of its own scripts (the same Lua
// text as on an external Redis, one implementation for both) with a
// server hook: one Lua state per miniredis instance, set up once as
// miniredis sets up each of its own, runs the script's compiled prototype
// under miniredis' mutex for the whole run (so a script is atomic exactly
// as in miniredis and in Redis, whose single Lua state is reused the same
// way), and each redis.call goes to miniredis' own command table as a
// nested call, as miniredis' redis.call does, with reused buffers. The
// reply is converted by the same rules as miniredis'. Everything else
// (other scripts, EVAL, SCRIPT, connections inside MULTI or SUBSCRIBE, and
// any miniredis whose connection context is not the layout checked below)
// goes to miniredis' own EVALSHA unchanged.
//
// A nested call needs a miniredis connection context marked nested (it
// tells miniredis' commands that the mutex is held): its type is
// unexported, so it is made by reflection and its fields are set through
// offsets checked by name and type before first use (TestMiniScripts
// fails when a miniredis upgrade changes them).

// scriptSources are the store's scripts by SHA-1, lower-case hex, as
// EVALSHA names them.
var (
	scriptSourcesMu sync.Mutex
	scriptSources   = map[string]string{}
)

// addScriptSource records a script the embedded store runs itself.
func addScriptSource(src string) {
	sum := sha1.Sum([]byte(src))
	scriptSourcesMu.Lock()
	scriptSources[hex.EncodeToString(sum[:])] = src
	scriptSourcesMu.Unlock()
}

// compiledScripts compiles every recorded script once per process.
var compiledScripts = sync.OnceValues(func() (map[string]*lua.FunctionProto, error) {
	scriptSourcesMu.Lock()
	defer scriptSourcesMu.Unlock()
	protos := make(map[string]*lua.FunctionProto, len(scriptSources)+1)
	for sha, src := range scriptSources {
		p, err := compileLua(src)
		if err != nil {
			return nil, fmt.Errorf("script %s: %w", sha, err)
		}
		protos[sha] = p
	}
	return protos, nil
})

func compileLua(src string) (*lua.FunctionProto, error) {
	chunk, err := parse.Parse(strings.NewReader(src), "<string>")
	if err != nil {
		return nil, err
	}
	return lua.Compile(chunk, "")
}

// connCtxLayout is where the fields of miniredis' connection context sit,
// or ok false when they are not what this file expects.
type connCtxLayout struct {
	typ                                 reflect.Type // connCtx (not the pointer)
	selectedDB, transaction, subscriber uintptr
	nested, nestedSHA                   uintptr
}

var connLayout = sync.OnceValues(func() (connCtxLayout, bool) {
	var l connCtxLayout
	// Any command on a fresh peer makes its context.
	m := miniredis.NewMiniRedis()
	conn, err := m.Dial()
	if err != nil {
		return l, false
	}
	conn.Close()
	defer m.Close()
	p := server.NewPeer(bufio.NewWriter(&bytes.Buffer{}))
	m.Server().Dispatch(p, []string{"PING"})
	t := reflect.TypeOf(p.Ctx)
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct || t.Elem().Name() != "connCtx" {
		return l, false
	}
	l.typ = t.Elem()
	for _, f := range []struct {
		name string
		kind reflect.Kind
		off  *uintptr
	}{
		{"selectedDB", reflect.Int, &l.selectedDB},
		{"transaction", reflect.Slice, &l.transaction},
		{"subscriber", reflect.Pointer, &l.subscriber},
		{"nested", reflect.Bool, &l.nested},
		{"nestedSHA", reflect.String, &l.nestedSHA},
	} {
		sf, ok := l.typ.FieldByName(f.name)
		if !ok || len(sf.Index) != 1 || sf.Type.Kind() != f.kind {
			return l, false
		}
		*f.off = sf.Offset
	}
	return l, true
})

// peerState is what of a connection's context decides whether the hook may
// run its EVALSHA: it may not inside MULTI, in SUBSCRIBE mode, or nested.
func peerState(l connCtxLayout, c *server.Peer) (db int, ours bool) {
	if c.Ctx == nil {
		return 0, true // a connection's first command
	}
	v := reflect.ValueOf(c.Ctx)
	if v.Type() != reflect.PointerTo(l.typ) || v.IsNil() {
		return 0, false
	}
	p := v.UnsafePointer()
	if *(*bool)(unsafe.Add(p, l.nested)) ||
		*(*unsafe.Pointer)(unsafe.Add(p, l.subscriber)) != nil ||
		*(*[]byte)(unsafe.Add(p, l.transaction)) != nil {
		return 0, false
	}
	return *(*int)(unsafe.Add(p, l.selectedDB)), true
}

// miniScripts runs the store's scripts on one miniredis instance.
type miniScripts struct {
	m      *miniredis.Miniredis
	srv    *server.Server
	layout connCtxLayout
	protos map[string]*lua.FunctionProto

	// The rest is used only under m's mutex.
	l    *lua.LState
	g    *lua.LTable // globals
	ctx  any         // the nested connection context of the current run
	sha  string
	buf  bytes.Buffer
	w    *bufio.Writer
	r    *bufio.Reader
	runs atomic.Uint64 // scripts run by the hook, for tests

	// A chunked copy's bookkeeping (minicopy.go). marks is used under m's
	// mutex: the names scripts may have written since the copy began, nil
	// when no copy runs.
	marks    map[string]struct{}
	copyGate sync.RWMutex // shared by held-back commands, alone by a chunked copy
	inside   sync.Map     // peers whose command holdBack is dispatching
	writes   sync.Map     // command name -> may write
}

// serverHook is the hook to install, nil when ms is.
func (ms *miniScripts) serverHook() server.Hook {
	if ms == nil {
		return nil
	}
	return ms.hook
}

// newMiniScripts sets up the hook's Lua state for m, or returns nil when
// miniredis is not the one this file was written against (every script
// then runs through miniredis' own EVALSHA).
func newMiniScripts(m *miniredis.Miniredis) *miniScripts {
	layout, ok := connLayout()
	if !ok {
		return nil
	}
	protos, err := compiledScripts()
	if err != nil || m.Server() == nil {
		return nil
	}
	ms := &miniScripts{m: m, srv: m.Server(), layout: layout, protos: protos}
	ms.w = bufio.NewWriter(&ms.buf)
	ms.r = bufio.NewReader(&ms.buf)
	ms.l = ms.newState()
	ms.g = ms.l.G.Global
	return ms
}

// newState is a Lua state as miniredis' runLuaScript makes one.
func (ms *miniScripts) newState() *lua.LState {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	for _, pair := range []struct {
		n string
		f lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.CoroutineLibName, lua.OpenCoroutine},
		{lua.TabLibName, lua.OpenTable},
		{lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath},
		{lua.DebugLibName, lua.OpenDebug},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(pair.f), NRet: 0, Protect: true}, lua.LString(pair.n)); err != nil {
			panic(err)
		}
	}
	luajson.Preload(l)
	if err := l.CallByParam(lua.P{Fn: l.GetGlobal("require"), NRet: 1, Protect: true}, lua.LString("json")); err != nil {
		panic(err)
	}
	l.SetGlobal("cjson", l.Get(-1))
	l.Pop(1)
	l.SetGlobal("KEYS", l.NewTable())
	l.SetGlobal("ARGV", l.NewTable())
	mod := l.CreateTable(0, 12)
	for name, fn := range map[string]lua.LGFunction{
		"call":               ms.call(true),
		"pcall":              ms.call(false),
		"error_reply":        luaErrorReply,
		"status_reply":       luaStatus,
		"log":                func(*lua.LState) int { return 0 },
		"sha1hex":            luaSHA1Hex,
		"replicate_commands": func(l *lua.LState) int { l.Push(lua.LTrue); return 1 },
		"set_repl":           luaSetRepl,
		"setresp":            luaSetResp,
	} {
		mod.RawSetString(name, l.NewFunction(fn))
	}
	for i, name := range []string{"LOG_DEBUG", "LOG_VERBOSE", "LOG_NOTICE", "LOG_WARNING"} {
		mod.RawSetString(name, lua.LNumber(i))
	}
	l.SetGlobal("redis", mod)
	l.SetGlobal("server", mod)
	l.RegisterModule("os", map[string]lua.LGFunction{
		"clock": func(l *lua.LState) int { l.Push(lua.LNumber(42)); return 1 },
	})
	p, err := compileLua(protectGlobalsLua)
	if err != nil {
		panic(err)
	}
	l.Push(l.NewFunctionFromProto(p))
	if err := l.PCall(0, 0, nil); err != nil {
		panic(err)
	}
	return l
}

// protectGlobalsLua is miniredis' protection of the globals (after
// metalua's strict.lua), which Redis also has: a script cannot create or
// read an undeclared global.
const protectGlobalsLua = `
local dbg=debug
local mt = {}
setmetatable(_G, mt)
mt.__newindex = function (t, n, v)
  if dbg.getinfo(2) then
    local w = dbg.getinfo(2, "S").what
    if w ~= "C" then
      error("Script attempted to create global variable '"..tostring(n).."'", 2)
    end
  end
  rawset(t, n, v)
end
mt.__index = function (t, n)
  if dbg.getinfo(2) and dbg.getinfo(2, "S").what ~= "C" then
    error("Script attempted to access nonexistent global variable '"..tostring(n).."'", 2)
  end
  return rawget(t, n)
end
debug = nil
`

// hook is the server's pre-hook: it answers EVALSHA of the store's own
// scripts, and lets miniredis answer everything else.
func (ms *miniScripts) hook(c *server.Peer, cmd string, args ...string) bool {
	if cmd != "EVALSHA" || len(args) < 2 {
		return ms.holdBack(c, cmd, args)
	}
	proto, ok := ms.protos[strings.ToLower(args[0])]
	if !ok {
		return ms.holdBack(c, cmd, args)
	}
	db, ok := peerState(ms.layout, c)
	if !ok {
		return ms.holdBack(c, cmd, args)
	}
	// One context for the run's nested calls, as miniredis makes one: a
	// SELECT inside a script lasts until the script ends.
	sha := strings.ToLower(args[0])
	ctx := reflect.New(ms.layout.typ)
	p := ctx.UnsafePointer()
	*(*int)(unsafe.Add(p, ms.layout.selectedDB)) = db
	*(*bool)(unsafe.Add(p, ms.layout.nested)) = true
	*(*string)(unsafe.Add(p, ms.layout.nestedSHA)) = sha
	ms.m.Lock()
	defer ms.m.Unlock()
	ms.ctx, ms.sha = ctx.Interface(), sha
	ms.run(c, proto, args[1:])
	ms.ctx = nil
	return true
}

// run is miniredis' runLuaScript on the reused state: KEYS and ARGV, the
// script, and its reply converted to RESP on c.
func (ms *miniScripts) run(c *server.Peer, proto *lua.FunctionProto, args []string) {
	ms.runs.Add(1)
	l := ms.l
	defer l.SetTop(0)
	keysLen, err := strconv.Atoi(args[0])
	switch {
	case err != nil:
		c.WriteError("ERR value is not an integer or out of range")
		return
	case keysLen < 0:
		c.WriteError("ERR Number of keys can't be negative")
		return
	case keysLen > len(args)-1:
		c.WriteError("ERR Number of keys can't be greater than number of args")
		return
	}
	keys, argv := args[1:1+keysLen], args[1+keysLen:]
	kt := l.CreateTable(len(keys), 0)
	for i, k := range keys {
		kt.RawSetInt(i+1, lua.LString(k))
	}
	at := l.CreateTable(len(argv), 0)
	for i, a := range argv {
		at.RawSetInt(i+1, lua.LString(a))
	}
	ms.g.RawSetString("KEYS", kt)
	ms.g.RawSetString("ARGV", at)
	l.Push(l.NewFunctionFromProto(proto))
	if err := l.PCall(0, lua.MultRet, nil); err != nil {
		c.WriteError(fmt.Sprintf("ERR Error compiling script (new function): %s", err.Error()))
		return
	}
	luaReply(l, c, l.Get(1))
}

// call is redis.call (failFast) or redis.pcall: the command goes to
// miniredis as a nested call, which runs under the mutex the run holds,
// and its reply comes back as miniredis' redis.call returns it.
func (ms *miniScripts) call(failFast bool) lua.LGFunction {
	return func(l *lua.LState) int {
		top := l.GetTop()
		if top == 0 {
			l.Error(lua.LString(fmt.Sprintf("Please specify at least one argument for this redis lib call script: %s, &c.", ms.sha)), 1)
			return 0
		}
		args := make([]string, 0, top)
		for i := 1; i <= top; i++ {
			switch a := l.Get(i).(type) {
			case lua.LNumber:
				args = append(args, a.String())
			case lua.LString:
				args = append(args, string(a))
			default:
				l.Error(lua.LString(fmt.Sprintf("Lua redis lib command arguments must be strings or integers script: %s, &c.", ms.sha)), 1)
				return 0
			}
		}
		ms.mark(args)
		ms.buf.Reset()
		ms.w.Reset(&ms.buf)
		peer := server.NewPeer(ms.w)
		peer.Ctx = ms.ctx
		ms.srv.Dispatch(peer, args)
		ms.w.Flush()
		ms.r.Reset(&ms.buf)
		res, err := server.ParseReply(ms.r)
		if err != nil {
			msg := err.Error()
			unknown := strings.Contains(msg, "ERR unknown command")
			if failFast {
				if unknown {
					msg = fmt.Sprintf("Unknown Redis command called from script script: %s, &c.", ms.sha)
				}
				l.Error(lua.LString(msg), 1)
				return 0
			}
			if unknown {
				msg = "ERR Unknown Redis command called from script"
			}
			t := l.CreateTable(0, 1)
			t.RawSetString("err", lua.LString(msg))
			l.Push(t)
			return 1
		}
		switch r := res.(type) {
		case nil:
			l.Push(lua.LFalse)
		case int64:
			l.Push(lua.LNumber(r))
		case int:
			l.Push(lua.LNumber(r))
		case []uint8:
			l.Push(lua.LString(string(r)))
		case []any:
			l.Push(redisToLuaTable(l, r))
		case server.Simple:
			l.Push(statusTable(l, string(r)))
		case string:
			l.Push(lua.LString(r))
		case error:
			l.Error(lua.LString(r.Error()), 1)
			return 0
		default:
			l.Error(lua.LString(fmt.Sprintf("embedded store: reply of type %T", r)), 1)
			return 0
		}
		return 1
	}
}

func redisToLuaTable(l *lua.LState, res []any) *lua.LTable {
	t := l.CreateTable(len(res), 0)
	for _, e := range res {
		var v lua.LValue
		switch et := e.(type) {
		case nil:
			v = lua.LFalse
		case int:
			v = lua.LNumber(et)
		case int64:
			v = lua.LNumber(et)
		case []uint8:
			v = lua.LString(string(et))
		case []any:
			v = redisToLuaTable(l, et)
		case string:
			v = lua.LString(et)
		case server.Simple:
			v = lua.LString(string(et))
		default:
			v = lua.LString(fmt.Sprint(et))
		}
		t.Append(v)
	}
	return t
}

func statusTable(l *lua.LState, msg string) *lua.LTable {
	t := l.CreateTable(0, 1)
	t.RawSetString("ok", lua.LString(msg))
	return t
}

// luaReply is miniredis' luaToRedis: a script's value as RESP.
func luaReply(l *lua.LState, c *server.Peer, value lua.LValue) {
	switch t := value.(type) {
	case nil, *lua.LNilType:
		c.WriteNull()
	case lua.LBool:
		if t {
			c.WriteInt(1)
		} else {
			c.WriteNull()
		}
	case lua.LNumber:
		c.WriteInt(int(t))
	case lua.LString:
		c.WriteBulk(string(t))
	case *lua.LTable:
		if s := t.RawGetString("err"); s.Type() != lua.LTNil {
			c.WriteError(s.String())
			return
		}
		if s := t.RawGetString("ok"); s.Type() != lua.LTNil {
			c.WriteInline(s.String())
			return
		}
		var items []lua.LValue
		for j := 1; ; j++ {
			v := l.GetTable(t, lua.LNumber(j))
			if v == nil || v.Type() == lua.LTNil {
				break
			}
			items = append(items, v)
		}
		c.WriteLen(len(items))
		for _, v := range items {
			luaReply(l, c, v)
		}
	default:
		// Functions, userdata, threads: Redis answers nil.
		c.WriteNull()
	}
}

func luaErrorReply(l *lua.LState) int {
	msg, ok := l.Get(1).(lua.LString)
	if !ok {
		l.Error(lua.LString("wrong number or type of arguments"), 1)
		return 0
	}
	parts := strings.SplitN(string(msg), " ", 2)
	if parts[0] != "" && parts[0][0] == '-' {
		parts[0] = parts[0][1:]
	}
	final := "ERR " + parts[0]
	if len(parts) == 2 {
		final = parts[0] + " " + parts[1]
	}
	t := l.CreateTable(0, 1)
	t.RawSetString("err", lua.LString(final))
	l.Push(t)
	return 1
}

func luaStatus(l *lua.LState) int {
	msg, ok := l.Get(1).(lua.LString)
	if !ok {
		l.Error(lua.LString("wrong number or type of arguments"), 1)
		return 0
	}
	l.Push(statusTable(l, string(msg)))
	return 1
}

func luaSHA1Hex(l *lua.LState) int {
	if l.GetTop() != 1 {
		l.Error(lua.LString("wrong number of arguments"), 1)
		return 0
	}
	sum := sha1.Sum([]byte(lua.LVAsString(l.Get(1))))
	l.Push(lua.LString(hex.EncodeToString(sum[:])))
	return 1
}

func luaSetRepl(l *lua.LState) int {
	if l.GetTop() != 1 {
		l.Error(lua.LString("wrong number of arguments"), 1)
		return 0
	}
	return 1
}

// luaSetResp: the store's scripts speak RESP2 only.
func luaSetResp(l *lua.LState) int {
	l.Error(lua.LString("redis.setresp is not available to the embedded store's scripts"), 1)
	return 0
}
