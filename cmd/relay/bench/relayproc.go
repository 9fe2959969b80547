package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// relayProc is the relay under measurement: `relay serve` in a process of
// its own, so its CPU time and memory are its own, without the producers'
// and the receiver's.
type relayProc struct {
	cmd        *exec.Cmd
	ingest     string // host:port
	admin      string
	adminToken string
	startup    time.Duration // from exec to "relay started"
	exited     chan struct{}
	waitErr    error

	mu   sync.Mutex
	tail []string // the last lines of its log, for errors
}

// startedLine is the log line `relay serve` writes once consumers are ready
// and the APIs serve, with the bound addresses.
var startedLine = regexp.MustCompile(`msg="relay started" ingest=(\S+) admin=(\S+)`)

// startRelay runs the serve command with the config at path and waits for
// it to say it started.
func startRelay(ctx context.Context, serve func(args ...string) *exec.Cmd, args []string, adminToken string, within time.Duration) (*relayProc, error) {
	cmd := serve(args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout = io.Discard
	p := &relayProc{cmd: cmd, adminToken: adminToken, exited: make(chan struct{})}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start relay: %w", err)
	}
	started := make(chan [2]string, 1)
	go func() {
		s := bufio.NewScanner(stderr)
		s.Buffer(make([]byte, 64<<10), 1<<20)
		for s.Scan() {
			line := s.Text()
			if m := startedLine.FindStringSubmatch(line); m != nil {
				select {
				case started <- [2]string{m[1], m[2]}:
				default:
				}
			}
			p.mu.Lock()
			p.tail = append(p.tail, line)
			if len(p.tail) > 20 {
				p.tail = p.tail[1:]
			}
			p.mu.Unlock()
		}
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	timer := time.NewTimer(within)
	defer timer.Stop()
	select {
	case addrs := <-started:
		p.startup = time.Since(start)
		p.ingest, p.admin = addrs[0], addrs[1]
		return p, nil
	case <-p.exited:
		return nil, fmt.Errorf("relay exited before it started (%v):\n%s", p.waitErr, p.log())
	case <-timer.C:
		err = fmt.Errorf("relay not started after %s:\n%s", within, p.log())
	case <-ctx.Done():
		err = ctx.Err()
	}
	p.kill()
	return nil, err
}

func (p *relayProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.tail, "\n")
}

// stop asks the relay to stop (SIGTERM: it drains and writes its profiles)
// and waits for it, killing it if it takes too long.
func (p *relayProc) stop() error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.waitErr != nil {
			return fmt.Errorf("relay: %v:\n%s", p.waitErr, p.log())
		}
		return nil
	case <-time.After(time.Minute):
		p.kill()
		return errors.New("relay did not stop within a minute of SIGTERM")
	}
}

func (p *relayProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// cpuSeconds is the user and system CPU time the relay has used so far.
func (p *relayProc) cpuSeconds() float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: count from after it.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 { // fields 14 and 15 of stat, utime and stime, are 12 and 13 here
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go runs on.
const clockTicks = 100

// rssMB and maxRSSMB are the relay's resident set now and at its peak.
func (p *relayProc) rssMB() float64 {
	return procStatusMB(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid), "VmRSS:")
}

func (p *relayProc) maxRSSMB() float64 {
	return procStatusMB(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid), "VmHWM:")
}

// setState pauses or resumes a destination through the admin API.
func (p *relayProc) setState(ctx context.Context, dest string, pause bool) error {
	verb := "resume"
	if pause {
		verb = "pause"
	}
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+p.admin+"/v1/destinations/"+dest+"/"+verb, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+p.adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %d %s", verb, dest, resp.StatusCode, body)
	}
	return nil
}

// adminSamples is how many times the bench asks for every destination's
// status at the end of a run.
const adminSamples = 9

// adminLatency asks GET /v1/destinations n times, one after the other,
// and returns the median and the slowest answer's time in milliseconds.
func (p *relayProc) adminLatency(ctx context.Context, n int) (p50, maxMs float64, err error) {
	took := make([]float64, 0, n)
	for range n {
		req, err := http.NewRequestWithContext(ctx, "GET", "http://"+p.admin+"/v1/destinations", nil)
		if err != nil {
			return 0, 0, err
		}
		req.Header.Set("Authorization", "Bearer "+p.adminToken)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, 0, fmt.Errorf("GET /v1/destinations: %d", resp.StatusCode)
		}
		took = append(took, float64(time.Since(start).Microseconds())/1000)
	}
	slices.Sort(took)
	return took[len(took)/2], took[len(took)-1], nil
}
