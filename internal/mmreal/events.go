package mmreal

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mattermost/mattermost/server/public/model"
)

// Events is a person's websocket: every event the server pushed to them,
// in order (posted, post_edited, ephemeral_message, open_dialog, ...).
type Events struct {
	who string
	ws  *model.WebSocketClient

	mu      sync.Mutex
	all     []*model.WebSocketEvent
	taken   map[int]bool
	changed chan struct{} // closed and replaced whenever an event arrives
	closed  bool
}

// Listen opens the person's websocket (model.WebSocketClient, as the
// webapp does) and collects its events until the test ends. It returns once
// the server has accepted the token, so no later event is missed.
func (p *Person) Listen(tb testing.TB) *Events {
	tb.Helper()
	wsURL := "ws" + strings.TrimPrefix(p.url, "http")
	ws, err := model.NewWebSocketClient4(wsURL, p.Token)
	if err != nil {
		tb.Fatalf("mmreal: websocket for %s: %v", p.Username(), err)
	}
	e := &Events{who: p.Username(), ws: ws, taken: map[int]bool{}, changed: make(chan struct{})}
	ws.Listen()

	authed := make(chan *model.WebSocketResponse, 1)
	go func() {
		for r := range ws.ResponseChannel {
			if r.SeqReply == 1 {
				select {
				case authed <- r:
				default:
				}
			}
		}
	}()
	go func() {
		for range ws.PingTimeoutChannel {
		}
	}()
	go func() {
		for ev := range ws.EventChannel {
			e.mu.Lock()
			e.all = append(e.all, ev)
			close(e.changed)
			e.changed = make(chan struct{})
			e.mu.Unlock()
		}
		e.mu.Lock()
		e.closed = true
		close(e.changed)
		e.changed = make(chan struct{})
		e.mu.Unlock()
	}()
	tb.Cleanup(ws.Close)

	select {
	case r := <-authed:
		if r.Status != model.StatusOk {
			tb.Fatalf("mmreal: websocket of %s refused the token: %+v", p.Username(), r)
		}
	case <-time.After(10 * time.Second):
		tb.Fatalf("mmreal: websocket of %s: no answer to the authentication challenge", p.Username())
	}
	return e
}

// All returns every event received so far.
func (e *Events) All() []*model.WebSocketEvent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*model.WebSocketEvent(nil), e.all...)
}

// Next returns the oldest event that matches and that Next has not returned
// before, waiting up to timeout for one to arrive; none fails the test.
func (e *Events) Next(tb testing.TB, timeout time.Duration, what string, match func(*model.WebSocketEvent) bool) *model.WebSocketEvent {
	tb.Helper()
	deadline := time.After(timeout)
	for {
		e.mu.Lock()
		for i, ev := range e.all {
			if !e.taken[i] && match(ev) {
				e.taken[i] = true
				e.mu.Unlock()
				return ev
			}
		}
		changed, closed := e.changed, e.closed
		e.mu.Unlock()
		if closed {
			tb.Fatalf("mmreal: websocket of %s closed while waiting for %s", e.who, what)
		}
		select {
		case <-changed:
		case <-deadline:
			tb.Fatalf("mmreal: %s got no %s within %v; events: %s", e.who, what, timeout, e.summary())
			return nil
		}
	}
}

// Count returns how many events received so far match.
func (e *Events) Count(match func(*model.WebSocketEvent) bool) int {
	n := 0
	for _, ev := range e.All() {
		if match(ev) {
			n++
		}
	}
	return n
}

// NextEphemeral waits for the next ephemeral message (a message only this
// person sees: an action reply's ephemeral_text, a command reply) and
// returns its post.
func (e *Events) NextEphemeral(tb testing.TB, timeout time.Duration) *model.Post {
	tb.Helper()
	ev := e.Next(tb, timeout, "ephemeral message", IsType(model.WebsocketEventEphemeralMessage))
	return EventPost(tb, ev)
}

// NextDialog waits for the next open_dialog event and returns the dialog
// request the integration made.
func (e *Events) NextDialog(tb testing.TB, timeout time.Duration) *model.OpenDialogRequest {
	tb.Helper()
	ev := e.Next(tb, timeout, "open_dialog", IsType(model.WebsocketEventOpenDialog))
	raw, _ := ev.GetData()["dialog"].(string)
	var d model.OpenDialogRequest
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		tb.Fatalf("mmreal: open_dialog event without a dialog: %v (%v)", err, ev.GetData())
	}
	return &d
}

// IsType matches events of one type.
func IsType(t model.WebsocketEventType) func(*model.WebSocketEvent) bool {
	return func(ev *model.WebSocketEvent) bool { return ev.EventType() == t }
}

// EventPost decodes the post that a posted, post_edited or
// ephemeral_message event carries (as a JSON string in data.post).
func EventPost(tb testing.TB, ev *model.WebSocketEvent) *model.Post {
	tb.Helper()
	p, err := eventPost(ev)
	if err != nil {
		tb.Fatalf("mmreal: %v", err)
	}
	return p
}

func eventPost(ev *model.WebSocketEvent) (*model.Post, error) {
	raw, ok := ev.GetData()["post"].(string)
	if !ok {
		return nil, fmt.Errorf("%s event without a post: %v", ev.EventType(), ev.GetData())
	}
	var p model.Post
	if err := json.Unmarshal([]byte(raw), &p); err != nil {
		return nil, fmt.Errorf("%s event: decode post: %w", ev.EventType(), err)
	}
	return &p, nil
}

// PostEvent matches events of type t whose post has this id (or whose post
// answers to this root, for ephemeral replies to a clicked post).
func PostEvent(t model.WebsocketEventType, postID string) func(*model.WebSocketEvent) bool {
	return func(ev *model.WebSocketEvent) bool {
		if ev.EventType() != t {
			return false
		}
		p, err := eventPost(ev)
		return err == nil && (p.Id == postID || p.RootId == postID)
	}
}

func (e *Events) summary() string {
	var b strings.Builder
	for i, ev := range e.All() {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(ev.EventType()))
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}
