package mmtest

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mattermost/mattermost/server/public/model"
)

// wsBuffer is how many events a slow websocket reader may fall behind
// before the fake drops its connection (as a real server's hub does).
const wsBuffer = 1024

// wsConn is one authenticated websocket of a user.
type wsConn struct {
	userID string
	send   chan []byte
	seq    int64 // next event sequence number; guarded by Server.mu
	once   sync.Once
	done   chan struct{}
}

func (c *wsConn) close() { c.once.Do(func() { close(c.done) }) }

var upgrader = websocket.Upgrader{
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
	CheckOrigin:     func(*http.Request) bool { return true },
}

// handleWebSocket handles "GET /api/v4/websocket": the webapp's event
// stream. The token comes in the Authorization header, as ?access_token=,
// or (what model.WebSocketClient does) in an authentication_challenge
// message after connecting; the server answers that with an OK response,
// then sends hello. Events follow the real server's shape: posted and
// post_edited to channel members, ephemeral_message and open_dialog to one
// user, each with its own sequence number per connection.
func (s *Server) handleWebSocket(w http.ResponseWriter, r *http.Request) {
	user := s.authenticate(r)
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered
	}
	defer conn.Close()
	var challenge int64 // the seq of the authentication_challenge to answer
	if user == nil {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for user == nil {
			var req model.WebSocketRequest
			if err := conn.ReadJSON(&req); err != nil {
				return
			}
			if req.Action != string(model.WebsocketAuthenticationChallenge) {
				continue
			}
			token, _ := req.Data["token"].(string)
			s.mu.Lock()
			if id, ok := s.tokens[token]; ok {
				user = s.users[id]
			}
			s.mu.Unlock()
			if user == nil {
				resp := model.NewWebSocketError(req.Seq, newAppError("WebSocketRouter", http.StatusUnauthorized,
					"api.web_socket_router.not_authenticated.app_error", "Unauthorized."))
				b, _ := resp.ToJSON()
				_ = conn.WriteMessage(websocket.TextMessage, b)
				continue
			}
			challenge = req.Seq
		}
		conn.SetReadDeadline(time.Time{})
	}

	// Registered before the client hears it is authenticated, so it misses
	// no event that follows.
	c := &wsConn{userID: user.Id, send: make(chan []byte, wsBuffer), done: make(chan struct{})}
	s.mu.Lock()
	s.wsConns[c] = true
	if challenge != 0 {
		b, _ := model.NewWebSocketResponse(model.StatusOk, challenge, nil).ToJSON()
		c.send <- b
	}
	hello := model.NewWebSocketEvent(model.WebsocketEventHello, "", "", user.Id, nil, "")
	hello.Add("server_version", VersionID)
	s.queueLocked(c, hello)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.wsConns, c)
		s.mu.Unlock()
		c.close()
	}()

	// Reader: answers nothing else, but notices when the client goes away.
	go func() {
		defer c.close()
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for {
		select {
		case b := <-c.send:
			if err := conn.WriteMessage(websocket.TextMessage, b); err != nil {
				return
			}
		case <-c.done:
			_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			return
		}
	}
}

// queueLocked sends one event to one connection, numbering it.
func (s *Server) queueLocked(c *wsConn, ev *model.WebSocketEvent) {
	c.seq++
	b, err := ev.SetSequence(c.seq).ToJSON()
	if err != nil {
		s.tb.Errorf("mmtest: encode websocket event %s: %v", ev.EventType(), err)
		return
	}
	select {
	case c.send <- b:
	default:
		c.close() // too far behind: a real hub drops the connection too
	}
}

// publishLocked sends an event to every connection of the given users.
func (s *Server) publishLocked(ev *model.WebSocketEvent, userIDs ...string) {
	if len(s.wsConns) == 0 {
		return
	}
	to := map[string]bool{}
	for _, id := range userIDs {
		to[id] = true
	}
	for c := range s.wsConns {
		if to[c.userID] {
			s.queueLocked(c, ev.Copy())
		}
	}
}

// postJSON is a post as events carry it: the client form, as a JSON string.
func (s *Server) postJSONLocked(p *model.Post) string {
	b, err := json.Marshal(s.clientPostLocked(p))
	if err != nil {
		panic("mmtest: marshal post: " + err.Error())
	}
	return string(b)
}

// publishPostedLocked tells the channel's members about a new post.
func (s *Server) publishPostedLocked(p *model.Post) {
	c := s.channels[p.ChannelId]
	if c == nil {
		return
	}
	ev := model.NewWebSocketEvent(model.WebsocketEventPosted, "", c.Id, "", nil, "")
	ev.Add("channel_display_name", c.DisplayName)
	ev.Add("channel_name", c.Name)
	ev.Add("channel_type", string(c.Type))
	ev.Add("post", s.postJSONLocked(p))
	sender := "System"
	if u := s.users[p.UserId]; u != nil {
		sender = "@" + u.Username
	}
	ev.Add("sender_name", sender)
	ev.Add("set_online", true)
	ev.Add("team_id", c.TeamId)
	s.publishLocked(ev, s.chanMembers[c.Id]...)
}

// publishEditedLocked tells the channel's members about an edited post.
func (s *Server) publishEditedLocked(p *model.Post) {
	ev := model.NewWebSocketEvent(model.WebsocketEventPostEdited, "", p.ChannelId, "", nil, "")
	ev.Add("post", s.postJSONLocked(p))
	s.publishLocked(ev, s.chanMembers[p.ChannelId]...)
}

// publishEphemeralLocked sends an ephemeral post to one user.
func (s *Server) publishEphemeralLocked(userID string, p *model.Post) {
	ev := model.NewWebSocketEvent(model.WebsocketEventEphemeralMessage, "", p.ChannelId, userID, nil, "")
	b, err := json.Marshal(p)
	if err != nil {
		panic("mmtest: marshal post: " + err.Error())
	}
	ev.Add("post", string(b))
	s.publishLocked(ev, userID)
}

// publishOpenDialogLocked sends an open_dialog event to one user; the
// trigger_id in it is the short client trigger id, as on a real server.
func (s *Server) publishOpenDialogLocked(userID string, req model.OpenDialogRequest) {
	if raw, err := decodeTriggerFields(req.TriggerId); err == nil {
		req.TriggerId = raw[0]
	}
	b, err := json.Marshal(req)
	if err != nil {
		panic("mmtest: marshal dialog: " + err.Error())
	}
	ev := model.NewWebSocketEvent(model.WebsocketEventOpenDialog, "", "", userID, nil, "")
	ev.Add("dialog", string(b))
	s.publishLocked(ev, userID)
}

// decodeTriggerFields splits a trigger_id into its four fields.
func decodeTriggerFields(trigger string) ([]string, error) {
	raw, err := base64.StdEncoding.DecodeString(trigger)
	if err != nil {
		return nil, err
	}
	return strings.Split(string(raw), ":"), nil
}

// Hijack lets the websocket upgrade through the request recorder.
func (r *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := r.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("mmtest: connection cannot be hijacked")
	}
	r.status = http.StatusSwitchingProtocols
	return h.Hijack()
}
