// Package chromium is a minimal Chrome DevTools Protocol client for browser
// tests: it starts Debian's chromium headless, attaches to its page over the
// DevTools websocket, navigates, evaluates, collects console errors and
// takes screenshots. The dashboard's browser test and the end-to-end tests
// against a real Mattermost use it.
package chromium

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

type cdpMsg struct {
	ID     int             `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Params json.RawMessage `json:"params,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// Browser is a headless chromium with one page, driven over the DevTools
// protocol.
type Browser struct {
	t    testing.TB
	cmd  *exec.Cmd
	conn *websocket.Conn

	mu       sync.Mutex
	next     int
	pending  map[int]chan cdpMsg
	problems []string // console errors, exceptions, failed loads
	done     chan struct{}
}

// Start starts chromium with the flags CI uses and attaches to its
// first page. It skips the test, loudly, when chromium is not installed.
func Start(t testing.TB) *Browser {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("chromium is not installed: .ci/run must install it (apt-get install -y chromium)")
		}
		t.Skip("SKIPPING THE BROWSER TEST: chromium is not installed (apt-get install -y chromium)")
	}
	cmd := exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--remote-debugging-port=0", "--user-data-dir="+t.TempDir(), "--no-first-run", "--no-default-browser-check",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1280,900", "about:blank")
	// Its own process group, so the renderers and the zygote end with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-exited
		}
		// Give the group's other processes a moment to go before the
		// profile directory is removed.
		for i := 0; i < 50 && syscall.Kill(-pgid, 0) == nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	})
	wsURL := make(chan string, 1)
	var logLines []string
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			logMu.Lock()
			logLines = append(logLines, line)
			logMu.Unlock()
			if _, u, ok := strings.Cut(line, "DevTools listening on "); ok {
				wsURL <- strings.TrimSpace(u)
			}
		}
	}()
	var browserWS string
	select {
	case browserWS = <-wsURL:
	case <-time.After(30 * time.Second):
		logMu.Lock()
		defer logMu.Unlock()
		t.Fatalf("chromium did not start its DevTools endpoint:\n%s", strings.Join(logLines, "\n"))
	}
	// The browser endpoint's host:port serves /json/list with the page.
	hostport := strings.TrimPrefix(browserWS, "ws://")
	hostport = hostport[:strings.IndexByte(hostport, '/')]
	var pageWS string
	for deadline := time.Now().Add(10 * time.Second); pageWS == "" && time.Now().Before(deadline); {
		resp, err := http.Get("http://" + hostport + "/json/list")
		if err == nil {
			var targets []struct {
				Type string `json:"type"`
				WS   string `json:"webSocketDebuggerUrl"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
			for _, tg := range targets {
				if tg.Type == "page" {
					pageWS = tg.WS
					break
				}
			}
		}
		if pageWS == "" {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if pageWS == "" {
		t.Fatal("chromium has no page target")
	}
	conn, _, err := websocket.DefaultDialer.Dial(pageWS, nil)
	if err != nil {
		t.Fatalf("attach to chromium: %v", err)
	}
	b := &Browser{t: t, cmd: cmd, conn: conn, pending: map[int]chan cdpMsg{}, done: make(chan struct{})}
	t.Cleanup(func() { conn.Close(); <-b.done })
	go b.read()
	for _, m := range []string{"Page.enable", "Runtime.enable", "Log.enable", "Network.enable"} {
		b.Call(m, nil)
	}
	return b
}

func (b *Browser) read() {
	defer close(b.done)
	for {
		var m cdpMsg
		if err := b.conn.ReadJSON(&m); err != nil {
			b.mu.Lock()
			for _, ch := range b.pending {
				close(ch)
			}
			b.pending = map[int]chan cdpMsg{}
			b.mu.Unlock()
			return
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.pending[m.ID]
			delete(b.pending, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		b.event(m)
	}
}

// event records what counts as a console error.
func (b *Browser) event(m cdpMsg) {
	var p struct {
		Type  string `json:"type"`
		Entry struct {
			Level, Text, URL string
		} `json:"entry"`
		Args []struct {
			Value       any    `json:"value"`
			Description string `json:"description"`
		} `json:"args"`
		ExceptionDetails struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
		ErrorText string `json:"errorText"`
		Canceled  bool   `json:"canceled"`
	}
	_ = json.Unmarshal(m.Params, &p)
	var problem string
	switch m.Method {
	case "Runtime.consoleAPICalled":
		if p.Type == "error" || p.Type == "assert" {
			var parts []string
			for _, a := range p.Args {
				parts = append(parts, fmt.Sprint(a.Value, a.Description))
			}
			problem = "console." + p.Type + ": " + strings.Join(parts, " ")
		}
	case "Runtime.exceptionThrown":
		problem = "exception: " + p.ExceptionDetails.Text + " " + p.ExceptionDetails.Exception.Description
	case "Log.entryAdded":
		if p.Entry.Level == "error" {
			problem = "log: " + p.Entry.Text + " " + p.Entry.URL
		}
	case "Network.loadingFailed":
		if !p.Canceled {
			problem = "network: " + p.ErrorText
		}
	}
	if problem != "" {
		b.mu.Lock()
		b.problems = append(b.problems, problem)
		b.mu.Unlock()
	}
}

// TakeProblems returns and clears the console errors seen so far.
func (b *Browser) TakeProblems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.problems
	b.problems = nil
	return p
}

// Call sends a DevTools command to the page and returns its result; an error
// fails the test.
func (b *Browser) Call(method string, params any) json.RawMessage {
	b.t.Helper()
	res, err := b.TryCall(method, params)
	if err != nil {
		b.t.Fatalf("cdp %s: %v", method, err)
	}
	return res
}

// TryCall is Call that returns the browser's error instead of failing the
// test: polling tolerates a page that navigates while it is asked.
func (b *Browser) TryCall(method string, params any) (json.RawMessage, error) {
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan cdpMsg, 1)
	b.pending[id] = ch
	b.mu.Unlock()
	if params == nil {
		params = map[string]any{}
	}
	if err := b.conn.WriteJSON(map[string]any{"id": id, "method": method, "params": params}); err != nil {
		return nil, err
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return nil, errors.New("connection closed")
		}
		if m.Error != nil {
			return nil, errors.New(m.Error.Message)
		}
		return m.Result, nil
	case <-time.After(30 * time.Second):
		return nil, errors.New("no answer in 30 s")
	}
}

// Eval evaluates a JavaScript expression and decodes its JSON value into out.
func (b *Browser) Eval(expr string, out any) {
	b.t.Helper()
	res := b.Call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true})
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		b.t.Fatalf("eval %q: %v", expr, err)
	}
	if r.ExceptionDetails != nil {
		b.t.Fatalf("eval %q: %s", expr, r.ExceptionDetails.Text)
	}
	if out != nil {
		if err := json.Unmarshal(r.Result.Value, out); err != nil {
			b.t.Fatalf("eval %q: decode %s: %v", expr, r.Result.Value, err)
		}
	}
}

// Navigate starts loading url in the page; WaitFor tells when the page
// that ends up loaded (after redirects and scripted form posts) is ready.
func (b *Browser) Navigate(url string) {
	b.t.Helper()
	b.Call("Page.navigate", map[string]any{"url": url})
}

// WaitFor polls a JavaScript condition until it is true.
func (b *Browser) WaitFor(cond string, timeout time.Duration) {
	b.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var ok bool
		res, _ := b.TryCall("Runtime.evaluate", map[string]any{"expression": "Boolean(" + cond + ")", "returnByValue": true})
		var r struct {
			Result struct {
				Value bool `json:"value"`
			} `json:"result"`
		}
		if json.Unmarshal(res, &r) == nil {
			ok = r.Result.Value
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var where string
			b.Eval(`location.href + " :: " + (document.body ? document.body.innerText.slice(0, 300) : "")`, &where)
			b.t.Fatalf("waiting for %s: timed out at %s", cond, where)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Viewport sets the window's size (mobile: a phone's touch and viewport).
func (b *Browser) Viewport(width, height int, mobile bool) {
	b.t.Helper()
	scale := 1
	if mobile {
		scale = 2
	}
	b.Call("Emulation.setDeviceMetricsOverride", map[string]any{"width": width, "height": height,
		"deviceScaleFactor": scale, "mobile": mobile})
}

// Screenshot saves the whole page as a PNG.
func (b *Browser) Screenshot(path string) {
	b.t.Helper()
	var size struct {
		W, H float64
	}
	b.Eval(`({W: document.documentElement.clientWidth, H: document.documentElement.scrollHeight})`, &size)
	res := b.Call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": 0, "width": size.W, "height": size.H, "scale": 1}})
	var r struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(res, &r); err != nil {
		b.t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s (%d bytes)", path, len(png))
}

// ScreenshotOf saves one element (by CSS selector) as a PNG.
func (b *Browser) ScreenshotOf(selector, path string) {
	b.t.Helper()
	var r struct{ X, Y, W, H float64 }
	b.Eval(`(() => { const e = document.querySelector(`+JSString(selector)+`).getBoundingClientRect();
	  return {X: e.left + scrollX, Y: e.top + scrollY, W: e.width, H: e.height}; })()`, &r)
	res := b.Call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": r.X, "y": r.Y, "width": r.W, "height": r.H, "scale": 1}})
	var out struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(res, &out); err != nil {
		b.t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(out.Data)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// JSString quotes s as a JavaScript string literal.
func JSString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
