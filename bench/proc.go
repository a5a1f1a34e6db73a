package bench

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"syscall"
	"time"
)

// ChildResult is what RunMeasured observed of one child process.
type ChildResult struct {
	Wall    time.Duration
	PeakRSS int64 // bytes: the last VmHWM read from /proc before it exited
	// PeakAnon and PeakFile are the highest RssAnon (heap, stacks) and
	// RssFile (file pages mapped, e.g. the bbolt mmap) seen while polling.
	PeakAnon, PeakFile int64
	CPU                time.Duration
	Output             string // combined stdout and stderr (tail)
}

// RunMeasured runs bin with args, polling /proc/<pid>/status every 10 ms,
// and returns its wall time, peak RSS (VmHWM) and output. A non-zero exit is
// an error carrying the output. ru_maxrss is not used: Go starts children
// with vfork semantics, and Linux then counts the parent's RSS in the
// child's ru_maxrss.
func RunMeasured(ctx context.Context, env []string, bin string, args ...string) (ChildResult, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if env != nil {
		cmd.Env = env
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return ChildResult{}, err
	}
	var r ChildResult
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for {
		select {
		case err = <-done:
			break wait
		case <-tick.C:
			pid := cmd.Process.Pid
			if v, e := ProcStatusBytes(pid, "VmHWM"); e == nil && v > r.PeakRSS {
				r.PeakRSS = v
			}
			if v, e := ProcStatusBytes(pid, "RssAnon"); e == nil && v > r.PeakAnon {
				r.PeakAnon = v
			}
			if v, e := ProcStatusBytes(pid, "RssFile"); e == nil && v > r.PeakFile {
				r.PeakFile = v
			}
		}
	}
	r.Wall = time.Since(start)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	r.Output = out.String()
	if len(r.Output) > 8<<10 {
		r.Output = "…" + r.Output[len(r.Output)-8<<10:]
	}
	if err != nil {
		return r, fmt.Errorf("%s %v: %w\n%s", bin, args, err, r.Output)
	}
	return r, nil
}
