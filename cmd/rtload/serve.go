package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"racktracker/app"
	"racktracker/storage/storagetest"
)

// The tracker under test runs in a child process (this same binary, told
// so by serveEnv), so that /proc tells its CPU apart from the load
// generator's. The child runs the program through app.Run, as racktracker's
// main does, background loops included; beside the tracker's handler it
// serves helloPath, a hello-world handler on the same server, the baseline
// of every ratio.
const (
	serveEnv  = "RTLOAD_SERVE" // JSON serveConfig; set only for the child
	helloPath = "/rtload/hello"
	helloBody = "hello\n"
)

// serveConfig is what the child changes in the default config.
type serveConfig struct {
	Backend          string        `json:"backend"`
	RedisAddr        string        `json:"redis_addr,omitempty"`
	RedisDB          int           `json:"redis_db,omitempty"`
	SnapshotPath     string        `json:"snapshot_path,omitempty"`
	SnapshotInterval time.Duration `json:"snapshot_interval,omitempty"`
	Hosts            int           `json:"hosts"`
	Racks            int           `json:"racks"`
	CPUProfile       string        `json:"cpu_profile,omitempty"`
}

// serveChild is the child's whole life: it runs the tracker on
// 127.0.0.1:0, prints "listening <addr>" on stdout, and shuts down in the
// program's order when stdin closes (the parent stopped it, or died).
func serveChild(raw string, stdin io.Reader, stdout, stderr io.Writer) error {
	var c serveConfig
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return fmt.Errorf("%s: %w", serveEnv, err)
	}
	if c.CPUProfile != "" {
		f, err := os.Create(c.CPUProfile)
		if err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return fmt.Errorf("cpu profile: %w", err)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	cfg := app.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Racks.Config = rackConfig(c.Hosts, c.Racks)
	cfg.Storage.Backend = c.Backend
	cfg.Storage.Redis.Addr = c.RedisAddr
	cfg.Storage.Redis.DB = c.RedisDB
	if c.SnapshotPath != "" {
		cfg.Storage.Embedded.SnapshotPath = c.SnapshotPath
	}
	if c.SnapshotInterval > 0 {
		cfg.Storage.Embedded.SnapshotInterval = c.SnapshotInterval
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		io.Copy(io.Discard, stdin) // until the parent closes it
		stop()
	}()
	return app.Run(ctx, app.Options{
		Config: cfg,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Wrap: func(tracker http.Handler) http.Handler {
			mux := http.NewServeMux()
			mux.HandleFunc(helloPath, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				io.WriteString(w, helloBody)
			})
			mux.Handle("/", tracker)
			return mux
		},
		Started: func(s app.Started) { fmt.Fprintf(stdout, "listening %s\n", s.Listen) },
	})
}

// trackerRun is a tracker serving in a child process.
type trackerRun struct {
	base   string
	pid    int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *storagetest.Buffer
	done   chan struct{}
	err    error // of Wait, set before done closes
}

// startTracker starts the child and waits for its address.
func startTracker(ctx context.Context, c serveConfig) (*trackerRun, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	t := &trackerRun{stderr: &storagetest.Buffer{}, done: make(chan struct{})}
	t.cmd = exec.Command(self)
	t.cmd.Env = append(os.Environ(), serveEnv+"="+string(raw))
	t.cmd.Stderr = t.stderr
	if t.stdin, err = t.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := t.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := t.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start tracker process: %w", err)
	}
	t.pid = t.cmd.Process.Pid
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		io.Copy(io.Discard, out)
	}()
	go func() { t.err = t.cmd.Wait(); close(t.done) }()
	select {
	case line, ok := <-lines:
		addr, found := strings.CutPrefix(line, "listening ")
		if !ok || !found {
			t.stop()
			return nil, fmt.Errorf("tracker process did not start: %s", lastLine(t.stderr.String()))
		}
		t.base = "http://" + addr
		return t, nil
	case <-ctx.Done():
		t.stop()
		return nil, ctx.Err()
	case <-time.After(warmupLimit):
		t.stop()
		return nil, errors.New("tracker process did not start within " + warmupLimit.String())
	}
}

// stop closes the child's stdin, which shuts it down in the program's
// order, and waits for it; it is killed when it overstays.
func (t *trackerRun) stop() error {
	t.stdin.Close()
	select {
	case <-t.done:
	case <-time.After(2 * shutdownWait):
		t.cmd.Process.Kill()
		<-t.done
		return errors.New("tracker process did not stop in time; killed")
	}
	if t.err != nil {
		return fmt.Errorf("tracker process: %w: %s", t.err, lastLine(t.stderr.String()))
	}
	return nil
}

// cpuTime is the CPU time (user and system) a process has used so far,
// from /proc/<pid>/stat; 0 where /proc cannot tell.
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields count from after its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// utime and stime are fields 14 and 15 of stat, 12 and 13 here.
	if len(f) < 13 {
		return 0
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(u+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100
