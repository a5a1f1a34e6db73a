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
	Wall     time.Duration
	PeakRSS  int64 // bytes: the larger of polled VmHWM and the kernel's ru_maxrss
	PolledHW int64 // highest VmHWM read from /proc while it ran
	MaxRSS   int64 // ru_maxrss at exit
	CPU      time.Duration
	Output   string // combined stdout and stderr (tail)
}

// RunMeasured runs bin with args, polling /proc/<pid>/status VmHWM every
// 10 ms, and returns its wall time, peak RSS and output. A non-zero exit is
// an error carrying the output.
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
			if v, e := ProcStatusBytes(cmd.Process.Pid, "VmHWM"); e == nil && v > r.PolledHW {
				r.PolledHW = v
			}
		}
	}
	r.Wall = time.Since(start)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.MaxRSS = ru.Maxrss << 10 // kilobytes on Linux
		r.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	r.PeakRSS = max(r.PolledHW, r.MaxRSS)
	r.Output = out.String()
	if len(r.Output) > 8<<10 {
		r.Output = "…" + r.Output[len(r.Output)-8<<10:]
	}
	if err != nil {
		return r, fmt.Errorf("%s %v: %w\n%s", bin, args, err, r.Output)
	}
	return r, nil
}
