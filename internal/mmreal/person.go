package mmreal

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/mattermost/mattermost/server/public/model"
)

// Person is someone using Mattermost with their own token: what their
// client can do, through the same endpoints the webapp calls.
type Person struct {
	User   *model.User
	Token  string
	Client *model.Client4 // logged in with Token

	url  string
	http *http.Client
}

// NewPerson wraps a user and their token on the server at url (a real
// server or the fake in bot/mmtest). With an empty token it is anonymous:
// what an integration is when it calls dialogs/open.
func NewPerson(url string, u *model.User, token string) *Person {
	c := model.NewAPIv4Client(url)
	c.SetToken(token)
	return &Person{User: u, Token: token, Client: c, url: strings.TrimRight(url, "/"), http: &http.Client{}}
}

// ID is the person's user id.
func (p *Person) ID() string { return p.User.Id }

// Username is the person's username.
func (p *Person) Username() string { return p.User.Username }

// Do sends an API request as this person and returns the status and body.
// in, when not nil, is sent as JSON. A status of 300 or more comes back
// with a *model.AppError (status and id of the server's answer) as the error.
func (p *Person) Do(ctx context.Context, method, path string, in any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, nil, fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.url+path, body)
	if err != nil {
		return 0, nil, err
	}
	if p.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.Token)
	}
	req.Header.Set("X-Requested-With", "XMLHttpRequest")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		return resp.StatusCode, out, appError(resp.StatusCode, out)
	}
	return resp.StatusCode, out, nil
}

// ClickResult is what the clicking person's client got back.
type ClickResult struct {
	Status int
	// TriggerID is the client trigger id of the answer: the first field of
	// the signed trigger_id that the integration received.
	TriggerID string
}

// Click clicks a button, like the webapp:
// POST /api/v4/posts/{post_id}/actions/{action_id}. A refusal (403 not a
// channel member, 404 no such action, 400 the integration failed) is
// returned as a *model.AppError, with the status in the result too.
func (p *Person) Click(ctx context.Context, postID, actionID string) (*ClickResult, error) {
	return p.action(ctx, postID, actionID, nil)
}

// Select picks an option of a message menu (an action of type select).
func (p *Person) Select(ctx context.Context, postID, actionID, option string) (*ClickResult, error) {
	return p.action(ctx, postID, actionID, &model.DoPostActionRequest{SelectedOption: option})
}

func (p *Person) action(ctx context.Context, postID, actionID string, req *model.DoPostActionRequest) (*ClickResult, error) {
	var in any
	if req != nil {
		in = req
	}
	status, body, err := p.Do(ctx, http.MethodPost, "/api/v4/posts/"+postID+"/actions/"+actionID, in)
	res := &ClickResult{Status: status}
	if err != nil {
		return res, err
	}
	var out model.PostActionAPIResponse
	if err := json.Unmarshal(body, &out); err != nil {
		return res, fmt.Errorf("click answer %q: %w", body, err)
	}
	res.TriggerID = out.TriggerId
	return res, nil
}

// SubmitDialog submits a dialog as this person, like the webapp:
// POST /api/v4/actions/dialogs/submit. The client chooses everything in req
// (url, callback_id, state, submission, channel_id, team_id); the server
// sets user_id from the session.
func (p *Person) SubmitDialog(ctx context.Context, req model.SubmitDialogRequest) (*model.SubmitDialogResponse, int, error) {
	status, body, err := p.Do(ctx, http.MethodPost, "/api/v4/actions/dialogs/submit", req)
	if err != nil {
		return nil, status, err
	}
	var out model.SubmitDialogResponse
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &out); err != nil {
			return nil, status, fmt.Errorf("dialog submit answer %q: %w", body, err)
		}
	}
	return &out, status, nil
}

// Command runs a slash command line ("/ica status") in a channel, like the
// webapp: POST /api/v4/commands/execute. teamID may be empty for a team
// channel.
func (p *Person) Command(ctx context.Context, channelID, teamID, line string) (*model.CommandResponse, int, error) {
	status, body, err := p.Do(ctx, http.MethodPost, "/api/v4/commands/execute",
		&model.CommandArgs{ChannelId: channelID, TeamId: teamID, Command: line})
	if err != nil {
		return nil, status, err
	}
	out, err := model.CommandResponseFromJSON(bytes.NewReader(body))
	if err != nil {
		return nil, status, fmt.Errorf("command answer %q: %w", body, err)
	}
	return out, status, nil
}

// Posts returns the newest posts of a channel that this person can read,
// oldest first (at most 200).
func (p *Person) Posts(ctx context.Context, channelID string) ([]*model.Post, error) {
	list, _, err := p.Client.GetPostsForChannel(ctx, channelID, 0, 200, "", false, false)
	if err != nil {
		return nil, err
	}
	// The order is newest first; posts made in the same millisecond keep it.
	posts := make([]*model.Post, 0, len(list.Order))
	for i := len(list.Order) - 1; i >= 0; i-- {
		posts = append(posts, list.Posts[list.Order[i]])
	}
	sort.SliceStable(posts, func(i, j int) bool { return posts[i].CreateAt < posts[j].CreateAt })
	return posts, nil
}

// Post returns one post as this person sees it.
func (p *Person) Post(ctx context.Context, postID string) (*model.Post, error) {
	post, _, err := p.Client.GetPost(ctx, postID, "")
	return post, err
}

// DirectChannel returns the direct-message channel between this person and
// another user, creating it when needed.
//
// To wait for a direct message from someone else, watch Listen's events
// instead of polling this channel: Mattermost 6.7.2 caches each user's
// channel memberships for 15 minutes, and a read of them that races with
// the creation of a direct channel is cached without it, so the person (or
// the sender) is refused (403) on that channel until the cache is dropped.
func (p *Person) DirectChannel(ctx context.Context, otherID string) (*model.Channel, error) {
	c, _, err := p.Client.CreateDirectChannel(ctx, p.ID(), otherID)
	return c, err
}
