package mmtest

import (
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mattermost/mattermost/server/public/model"
)

// retainPropKeys are the props a 6.7.2 server carries over when an action
// reply replaces a post's props (from_bot is not among them in 6.7.2).
var retainPropKeys = []string{"from_webhook", "override_username", "override_icon_url"}

func decodeJSON(r *http.Request, v any) error {
	return json.NewDecoder(r.Body).Decode(v)
}

func pageParams(r *http.Request) (page, perPage int) {
	page, _ = strconv.Atoi(r.URL.Query().Get("page"))
	perPage, err := strconv.Atoi(r.URL.Query().Get("per_page"))
	if err != nil || perPage <= 0 {
		perPage = 60
	}
	if perPage > 200 {
		perPage = 200
	}
	if page < 0 {
		page = 0
	}
	return page, perPage
}

func copyUser(u *model.User) *model.User {
	c := *u
	c.Password = ""
	c.AuthData = nil
	return &c
}

func userNotFound() *model.AppError {
	return newAppError("", http.StatusNotFound, "app.user.missing_account.const", "Unable to find the user.")
}

// handleGetMe handles "GET /api/v4/users/me".
func (s *Server) handleGetMe(w http.ResponseWriter, r *http.Request, me *model.User) {
	s.mu.Lock()
	u := copyUser(me)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, u)
}

// handleGetUser handles "GET /api/v4/users/{user_id}".
func (s *Server) handleGetUser(w http.ResponseWriter, r *http.Request, _ *model.User) {
	id := r.PathValue("user_id")
	if !model.IsValidId(id) {
		writeErr(w, r, invalidURLParam("user_id"))
		return
	}
	s.mu.Lock()
	u := s.users[id]
	if u != nil {
		u = copyUser(u)
	}
	s.mu.Unlock()
	if u == nil {
		writeErr(w, r, userNotFound())
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// handleGetUserByUsername handles "GET /api/v4/users/username/{username}":
// the name must be a valid username (lower case), matched exactly.
func (s *Server) handleGetUserByUsername(w http.ResponseWriter, r *http.Request, _ *model.User) {
	name := r.PathValue("username")
	if !model.IsValidUsername(name) {
		writeErr(w, r, invalidBodyParam("username"))
		return
	}
	s.mu.Lock()
	u := s.userByNameLocked(name)
	if u != nil {
		u = copyUser(u)
	}
	s.mu.Unlock()
	if u == nil {
		writeErr(w, r, newAppError("GetUserByUsername", http.StatusNotFound, "app.user.get_by_username.app_error",
			"Unable to find an existing account matching your username for this team. This team may require an invite from the team owner to join."))
		return
	}
	writeJSON(w, http.StatusOK, u)
}

// handleGetUsersByUsernames handles "POST /api/v4/users/usernames": unknown
// names are left out, as on a real server.
func (s *Server) handleGetUsersByUsernames(w http.ResponseWriter, r *http.Request, _ *model.User) {
	var names []string
	if err := decodeJSON(r, &names); err != nil || len(names) == 0 {
		writeErr(w, r, invalidBodyParam("usernames"))
		return
	}
	s.mu.Lock()
	out := []*model.User{}
	for _, n := range names {
		if u := s.userByNameLocked(n); u != nil {
			out = append(out, copyUser(u))
		}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// handleGetTeamByName handles "GET /api/v4/teams/name/{team_name}".
func (s *Server) handleGetTeamByName(w http.ResponseWriter, r *http.Request, me *model.User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.teamByNameLocked(r.PathValue("team_name"))
	if t == nil {
		writeErr(w, r, newAppError("GetTeamByName", http.StatusNotFound, "app.team.get_by_name.missing.app_error", "Unable to find the existing team."))
		return
	}
	if !s.teamMembers[t.Id][me.Id] && !t.AllowOpenInvite {
		writeErr(w, r, forbidden("getTeamByName"))
		return
	}
	c := *t
	writeJSON(w, http.StatusOK, &c)
}

// handleGetChannelByName handles "GET /api/v4/teams/{team_id}/channels/name/{channel_name}".
func (s *Server) handleGetChannelByName(w http.ResponseWriter, r *http.Request, me *model.User) {
	teamID := r.PathValue("team_id")
	if !model.IsValidId(teamID) {
		writeErr(w, r, invalidURLParam("team_id"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeChannelByNameLocked(w, r, me, teamID, r.PathValue("channel_name"))
}

// handleGetChannelByNameForTeamName handles
// "GET /api/v4/teams/name/{team_name}/channels/name/{channel_name}".
func (s *Server) handleGetChannelByNameForTeamName(w http.ResponseWriter, r *http.Request, me *model.User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.teamByNameLocked(r.PathValue("team_name"))
	if t == nil {
		writeErr(w, r, newAppError("", http.StatusNotFound, "app.team.get_by_name.missing.app_error", "Unable to find the existing team."))
		return
	}
	s.writeChannelByNameLocked(w, r, me, t.Id, r.PathValue("channel_name"))
}

func (s *Server) writeChannelByNameLocked(w http.ResponseWriter, r *http.Request, me *model.User, teamID, name string) {
	c := s.channelByNameLocked(teamID, name)
	if c == nil {
		writeErr(w, r, newAppError("GetChannelByName", http.StatusNotFound, "app.channel.get_by_name.missing.app_error", "Channel does not exist."))
		return
	}
	if !s.canReadChannelLocked(c, me.Id) {
		writeErr(w, r, forbidden("getChannelByName"))
		return
	}
	cc := *c
	writeJSON(w, http.StatusOK, &cc)
}

// channelForReadLocked loads {channel_id} and checks read_channel: channel
// members only, unless public is set (read_public_channel: the channel's
// team members may see a public channel itself, but not its members or
// posts).
func (s *Server) channelForReadLocked(r *http.Request, me *model.User, public bool) (*model.Channel, *model.AppError) {
	id := r.PathValue("channel_id")
	if !model.IsValidId(id) {
		return nil, invalidURLParam("channel_id")
	}
	c := s.channels[id]
	if c == nil {
		return nil, newAppError("GetChannel", http.StatusNotFound, "app.channel.get.existing.app_error", "Unable to find the existing channel.")
	}
	if !s.isMemberLocked(c.Id, me.Id) && !(public && s.canReadChannelLocked(c, me.Id)) {
		return nil, forbidden("getChannel")
	}
	return c, nil
}

// handleGetChannel handles "GET /api/v4/channels/{channel_id}".
func (s *Server) handleGetChannel(w http.ResponseWriter, r *http.Request, me *model.User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.channelForReadLocked(r, me, true)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	cc := *c
	cc.TotalMsgCount = int64(len(s.postOrder[c.Id]))
	writeJSON(w, http.StatusOK, &cc)
}

func (s *Server) memberLocked(channelID, userID string) model.ChannelMember {
	return model.ChannelMember{
		ChannelId:    channelID,
		UserId:       userID,
		Roles:        model.ChannelUserRoleId,
		NotifyProps:  model.GetDefaultChannelNotifyProps(),
		LastUpdateAt: s.millis(),
		SchemeUser:   true,
	}
}

// handleGetChannelMembers handles "GET /api/v4/channels/{channel_id}/members" (paged).
func (s *Server) handleGetChannelMembers(w http.ResponseWriter, r *http.Request, me *model.User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.channelForReadLocked(r, me, false)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	page, perPage := pageParams(r)
	ids := s.chanMembers[c.Id]
	out := model.ChannelMembers{}
	for i := page * perPage; i < len(ids) && i < (page+1)*perPage; i++ {
		out = append(out, s.memberLocked(c.Id, ids[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

// handleGetChannelMember handles "GET /api/v4/channels/{channel_id}/members/{user_id}".
func (s *Server) handleGetChannelMember(w http.ResponseWriter, r *http.Request, me *model.User) {
	uid := r.PathValue("user_id")
	if !model.IsValidId(uid) {
		writeErr(w, r, invalidURLParam("user_id"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.channelForReadLocked(r, me, false)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	if !s.isMemberLocked(c.Id, uid) {
		writeErr(w, r, newAppError("GetChannelMember", http.StatusNotFound, "app.channel.get_member.missing.app_error", "No channel member found for that user ID and channel ID."))
		return
	}
	m := s.memberLocked(c.Id, uid)
	writeJSON(w, http.StatusOK, &m)
}

// handleRemoveChannelMember handles
// "DELETE /api/v4/channels/{channel_id}/members/{user_id}": a user leaves
// (the fake has no admins, so only oneself can be removed).
func (s *Server) handleRemoveChannelMember(w http.ResponseWriter, r *http.Request, me *model.User) {
	uid := r.PathValue("user_id")
	if !model.IsValidId(uid) {
		writeErr(w, r, invalidURLParam("user_id"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.channelForReadLocked(r, me, false)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	if uid != me.Id {
		writeErr(w, r, forbidden("removeChannelMember"))
		return
	}
	ms := s.chanMembers[c.Id]
	for i, m := range ms {
		if m == uid {
			s.chanMembers[c.Id] = append(ms[:i:i], ms[i+1:]...)
			break
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK"})
}

// handleGetPostsForChannel handles "GET /api/v4/channels/{channel_id}/posts":
// newest first, paged, integrations stripped.
func (s *Server) handleGetPostsForChannel(w http.ResponseWriter, r *http.Request, me *model.User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.channelForReadLocked(r, me, false)
	if err != nil {
		writeErr(w, r, err)
		return
	}
	page, perPage := pageParams(r)
	ids := s.postOrder[c.Id]
	list := model.NewPostList()
	for i := page * perPage; i < len(ids) && i < (page+1)*perPage; i++ {
		p := s.posts[ids[len(ids)-1-i]]
		list.AddOrder(p.Id)
		list.AddPost(s.clientPostLocked(p))
	}
	hasNext := (page+1)*perPage < len(ids)
	list.HasNext = &hasNext
	writeJSON(w, http.StatusOK, list)
}

// handleCreateDirectChannel handles "POST /api/v4/channels/direct": the
// same channel comes back on every call, always with 201.
func (s *Server) handleCreateDirectChannel(w http.ResponseWriter, r *http.Request, me *model.User) {
	var ids []string
	if err := decodeJSON(r, &ids); err != nil || len(ids) != 2 || !model.IsValidId(ids[0]) || !model.IsValidId(ids[1]) {
		writeErr(w, r, invalidBodyParam("user_ids"))
		return
	}
	if ids[0] != me.Id && ids[1] != me.Id {
		writeErr(w, r, forbidden("createDirectChannel"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.users[id] == nil {
			writeErr(w, r, newAppError("CreateDirectChannel", http.StatusBadRequest, "api.channel.create_direct_channel.invalid_user.app_error", "Invalid user ID for direct channel creation."))
			return
		}
	}
	name := model.GetDMNameFromIds(ids[0], ids[1])
	c := s.channelByNameLocked("", name)
	if c == nil {
		now := s.millis()
		c = &model.Channel{
			Id: model.NewId(), CreateAt: now, UpdateAt: now,
			Type: model.ChannelTypeDirect, Name: name, CreatorId: me.Id,
		}
		s.channels[c.Id] = c
		s.joinLocked(c, ids[0])
		s.joinLocked(c, ids[1])
	}
	cc := *c
	writeJSON(w, http.StatusCreated, &cc)
}

// handleCreatePost handles "POST /api/v4/posts".
func (s *Server) handleCreatePost(w http.ResponseWriter, r *http.Request, me *model.User) {
	var p model.Post
	if err := decodeJSON(r, &p); err != nil {
		writeErr(w, r, invalidBodyParam("post"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.posts)
	created, appErr := s.createPostLocked(me, &p, "api")
	if appErr != nil {
		writeErr(w, r, appErr)
		return
	}
	out := s.clientPostLocked(created)
	if len(s.posts) > n {
		// A new post echoes the pending_post_id; a de-duplicated one comes
		// back as stored, without it.
		out.PendingPostId = p.PendingPostId
	}
	writeJSON(w, http.StatusCreated, out)
}

// createPostLocked validates and stores a post as the given user, the way
// the real CreatePost does (pending_post_id de-duplication included).
func (s *Server) createPostLocked(author *model.User, p *model.Post, via string) (*model.Post, *model.AppError) {
	c := s.channels[p.ChannelId]
	if c == nil || !s.isMemberLocked(c.Id, author.Id) {
		return nil, forbidden("createPost")
	}
	if strings.HasPrefix(p.Type, model.PostSystemMessagePrefix) {
		return nil, newAppError("createPost", http.StatusBadRequest, "api.context.invalid_param.app_error", "Invalid post.type parameter.")
	}
	if utf8.RuneCountInString(p.Message) > model.PostMessageMaxRunesV2 {
		return nil, newAppError("Post.IsValid", http.StatusBadRequest, "model.post.is_valid.msg.app_error", "Invalid Message.")
	}
	if p.RootId != "" {
		root := s.posts[p.RootId]
		if root == nil || root.ChannelId != p.ChannelId {
			return nil, newAppError("createPost", http.StatusBadRequest, "api.post.create_post.root_id.app_error", "Invalid RootId parameter.")
		}
	}
	now := s.now()
	if id := p.PendingPostId; id != "" && via == "api" {
		if seen, ok := s.pending[id]; ok && now.Sub(seen.at) < PendingPostIDTTL {
			if existing := s.posts[seen.postID]; existing != nil {
				return existing, nil
			}
		}
	}
	stored := clonePost(p)
	stored.Id = model.NewId()
	stored.UserId = author.Id
	stored.CreateAt = now.UnixMilli()
	stored.UpdateAt = stored.CreateAt
	stored.EditAt = 0
	stored.DeleteAt = 0
	stored.OriginalId = ""
	stored.PendingPostId = ""
	stored.Metadata = nil
	stored.ReplyCount = 0
	stored.PreCommit()
	if author.IsBot {
		stored.AddProp("from_bot", "true")
	}
	stored.FileIds = s.attachFilesLocked(stored, stored.FileIds)
	s.posts[stored.Id] = stored
	s.postOrder[c.Id] = append(s.postOrder[c.Id], stored.Id)
	if p.PendingPostId != "" && via == "api" {
		s.pending[p.PendingPostId] = pendingPost{postID: stored.Id, at: now}
	}
	s.publishPostedLocked(stored)
	return stored, nil
}

// attachFilesLocked keeps the file ids the author uploaded to this channel
// and that are not attached yet; the real server silently drops the others.
func (s *Server) attachFilesLocked(p *model.Post, ids []string) model.StringArray {
	out := model.StringArray{}
	for _, id := range ids {
		f := s.files[id]
		if f == nil || f.info.CreatorId != p.UserId || f.info.ChannelId != p.ChannelId || (f.info.PostId != "" && f.info.PostId != p.Id) {
			continue
		}
		f.info.PostId = p.Id
		out = append(out, id)
	}
	return out
}

// handleCreateEphemeralPost handles "POST /api/v4/posts/ephemeral".
func (s *Server) handleCreateEphemeralPost(w http.ResponseWriter, r *http.Request, me *model.User) {
	var req model.PostEphemeral
	if err := decodeJSON(r, &req); err != nil || req.Post == nil {
		writeErr(w, r, invalidBodyParam("post"))
		return
	}
	if !model.IsValidId(req.UserID) {
		writeErr(w, r, invalidBodyParam("user_id"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.channels[req.Post.ChannelId]
	if c == nil || !s.isMemberLocked(c.Id, me.Id) {
		writeErr(w, r, forbidden("createEphemeralPost"))
		return
	}
	to := s.users[req.UserID]
	if to == nil {
		writeErr(w, r, userNotFound())
		return
	}
	p := clonePost(req.Post)
	p.Id = model.NewId()
	p.UserId = me.Id
	p.Type = model.PostTypeEphemeral
	p.CreateAt = s.millis()
	p.UpdateAt = p.CreateAt
	p.MakeNonNil()
	s.ephemerals = append(s.ephemerals, Ephemeral{
		UserID: to.Id, Username: to.Username, ChannelID: c.Id, RootID: p.RootId,
		Message: p.Message, Source: "api", Post: clonePost(p),
	})
	s.publishEphemeralLocked(to.Id, p)
	writeJSON(w, http.StatusCreated, s.clientPostLocked(p))
}

// handleGetPost handles "GET /api/v4/posts/{post_id}".
func (s *Server) handleGetPost(w http.ResponseWriter, r *http.Request, me *model.User) {
	id := r.PathValue("post_id")
	if !model.IsValidId(id) {
		writeErr(w, r, invalidURLParam("post_id"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.posts[id]
	if p == nil {
		writeErr(w, r, newAppError("GetSinglePost", http.StatusNotFound, "app.post.get.app_error", "Unable to get the post."))
		return
	}
	if !s.canReadChannelLocked(s.channels[p.ChannelId], me.Id) {
		writeErr(w, r, forbidden("getPost"))
		return
	}
	writeJSON(w, http.StatusOK, s.clientPostLocked(p))
}

// handlePatchPost handles "PUT /api/v4/posts/{post_id}/patch" (the method
// model.Client4.PatchPost uses): message and/or props replace the old ones.
func (s *Server) handlePatchPost(w http.ResponseWriter, r *http.Request, me *model.User) {
	id := r.PathValue("post_id")
	if !model.IsValidId(id) {
		writeErr(w, r, invalidURLParam("post_id"))
		return
	}
	var patch model.PostPatch
	if err := decodeJSON(r, &patch); err != nil {
		writeErr(w, r, invalidBodyParam("post"))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.posts[id]
	// A missing post and someone else's post both answer 403 (edit_others_posts).
	if old == nil || old.UserId != me.Id || !s.isMemberLocked(old.ChannelId, me.Id) {
		writeErr(w, r, forbidden("patchPost"))
		return
	}
	if patch.Message != nil && utf8.RuneCountInString(*patch.Message) > model.PostMessageMaxRunesV2 {
		writeErr(w, r, newAppError("Post.IsValid", http.StatusBadRequest, "model.post.is_valid.msg.app_error", "Invalid Message."))
		return
	}
	received := clonePost(old)
	received.Patch(&patch)
	updated := s.updatePostLocked(old, received)
	writeJSON(w, http.StatusOK, s.clientPostLocked(updated))
}

// updatePostLocked is the real UpdatePost with safeUpdate=false: message,
// props, file ids, pin and reactions come from received; edit_at moves when
// the message or the attachments change.
func (s *Server) updatePostLocked(old, received *model.Post) *model.Post {
	now := s.millis()
	n := clonePost(old)
	if n.Message != received.Message {
		n.Message = received.Message
		n.EditAt = now
	}
	n.IsPinned = received.IsPinned
	n.HasReactions = received.HasReactions
	props := clonePost(received).GetProps()
	if props == nil {
		props = model.StringInterface{}
	}
	n.SetProps(props)
	n.FileIds = s.attachFilesLocked(n, received.FileIds)
	n.PreCommit()
	if n.EditAt == old.EditAt && (!old.FileIds.Equals(n.FileIds) || !old.AttachmentsEqual(n)) {
		n.EditAt = now
	}
	n.UpdateAt = now
	s.posts[n.Id] = n
	s.publishEditedLocked(n)
	return n
}

// handleDoPostAction handles "POST /api/v4/posts/{post_id}/actions/{action_id}",
// the endpoint a user's client calls when a button is clicked.
func (s *Server) handleDoPostAction(w http.ResponseWriter, r *http.Request, me *model.User) {
	var req model.DoPostActionRequest
	_ = decodeJSON(r, &req) // the body is optional
	res := s.doAction(r.Context(), me.Id, r.PathValue("post_id"), r.PathValue("action_id"), req.SelectedOption)
	if res.AppError != nil {
		writeErr(w, r, res.AppError)
		return
	}
	writeJSON(w, http.StatusOK, model.PostActionAPIResponse{Status: "OK", TriggerId: res.ClientTriggerID})
}

// handleSubmitDialog handles "POST /api/v4/actions/dialogs/submit".
func (s *Server) handleSubmitDialog(w http.ResponseWriter, r *http.Request, me *model.User) {
	var req model.SubmitDialogRequest
	if err := decodeJSON(r, &req); err != nil {
		writeErr(w, r, invalidBodyParam("dialog"))
		return
	}
	resp, appErr := s.submitDialog(r.Context(), me.Id, req)
	if appErr != nil {
		writeErr(w, r, appErr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// handleUploadFile handles "POST /api/v4/files", multipart (channel_id then
// files) or a raw body with ?channel_id=&filename=.
func (s *Server) handleUploadFile(w http.ResponseWriter, r *http.Request, me *model.User) {
	type upload struct {
		name string
		data []byte
	}
	var (
		channelID string
		uploads   []upload
		clientIDs = []string{}
	)
	mediaType, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if strings.HasPrefix(mediaType, "multipart/") {
		mr := multipart.NewReader(r.Body, params["boundary"])
		for {
			part, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				writeErr(w, r, newAppError("uploadFileStream", http.StatusBadRequest, "api.file.upload_file.read_request.app_error", "Unable to read the request."))
				return
			}
			data, _ := io.ReadAll(part)
			switch part.FormName() {
			case "channel_id":
				channelID = string(data)
			case "client_ids":
				clientIDs = append(clientIDs, string(data))
			case "files":
				if channelID == "" {
					// The real server streams parts and needs channel_id first.
					writeErr(w, r, invalidURLParam("channel_id"))
					return
				}
				uploads = append(uploads, upload{name: part.FileName(), data: data})
			}
		}
	} else {
		channelID = r.URL.Query().Get("channel_id")
		name := r.URL.Query().Get("filename")
		if name == "" {
			writeErr(w, r, invalidURLParam("filename"))
			return
		}
		data, _ := io.ReadAll(r.Body)
		uploads = append(uploads, upload{name: name, data: data})
	}
	if !model.IsValidId(channelID) {
		writeErr(w, r, invalidURLParam("channel_id"))
		return
	}
	if len(uploads) == 0 {
		writeErr(w, r, newAppError("uploadFileStream", http.StatusBadRequest, "api.file.upload_file.incorrect_number_of_files.app_error", "Unable to upload files. Incorrect number of files specified."))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.channels[channelID]; c == nil || !s.isMemberLocked(c.Id, me.Id) {
		writeErr(w, r, forbidden("uploadFileStream"))
		return
	}
	resp := &model.FileUploadResponse{FileInfos: []*model.FileInfo{}, ClientIds: clientIDs}
	now := s.millis()
	for _, u := range uploads {
		ext := strings.ToLower(strings.TrimPrefix(filepath.Ext(u.name), "."))
		info := &model.FileInfo{
			Id: model.NewId(), CreatorId: me.Id, ChannelId: channelID,
			CreateAt: now, UpdateAt: now, Name: u.name, Extension: ext,
			Size: int64(len(u.data)), MimeType: mime.TypeByExtension("." + ext),
		}
		s.files[info.Id] = &storedFile{info: info, data: u.data}
		c := *info
		resp.FileInfos = append(resp.FileInfos, &c)
	}
	writeJSON(w, http.StatusCreated, resp)
}

// handleGetFile handles "GET /api/v4/files/{file_id}": the bytes.
func (s *Server) handleGetFile(w http.ResponseWriter, r *http.Request, me *model.User) {
	id := r.PathValue("file_id")
	if !model.IsValidId(id) {
		writeErr(w, r, invalidURLParam("file_id"))
		return
	}
	s.mu.Lock()
	f := s.files[id]
	var (
		data []byte
		info model.FileInfo
		ok   bool
	)
	if f != nil {
		info = *f.info
		data = f.data
		c := s.channels[info.ChannelId]
		if p := s.posts[info.PostId]; p != nil {
			c = s.channels[p.ChannelId]
		}
		// read_channel on the post's channel: members only, public or not.
		ok = info.CreatorId == me.Id || (c != nil && s.isMemberLocked(c.Id, me.Id))
	}
	s.mu.Unlock()
	if f == nil {
		writeErr(w, r, newAppError("GetFileInfo", http.StatusNotFound, "app.file_info.get.app_error", "Unable to get the file info."))
		return
	}
	if !ok {
		writeErr(w, r, forbidden("getFile"))
		return
	}
	ct := info.MimeType
	if ct == "" {
		ct = "application/octet-stream"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Content-Disposition", `attachment;filename="`+info.Name+`"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

// handleOpenDialog handles "POST /api/v4/actions/dialogs/open". There is no
// auth: the signed trigger_id is the credential, valid for 3 s.
func (s *Server) handleOpenDialog(w http.ResponseWriter, r *http.Request) {
	var req model.OpenDialogRequest
	if err := decodeJSON(r, &req); err != nil {
		writeErr(w, r, invalidBodyParam("dialog"))
		return
	}
	if req.URL == "" {
		writeErr(w, r, invalidBodyParam("url"))
		return
	}
	userID, channelID, appErr := s.verifyTrigger(req.TriggerId)
	if appErr != nil {
		writeErr(w, r, appErr)
		return
	}
	if err := req.Dialog.IsValid(); err != nil {
		// 6.7.2 does not validate the dialog; newer servers reject it.
		s.tb.Logf("mmtest: dialog %q would be rejected by newer Mattermost servers: %v", req.Dialog.CallbackId, err)
	}
	s.mu.Lock()
	u := s.users[userID]
	s.dialogs[userID] = append(s.dialogs[userID], OpenDialog{
		UserID: userID, Username: u.Username, ChannelID: channelID, TriggerID: req.TriggerId,
		URL: req.URL, Dialog: req.Dialog, OpenedAt: s.now(),
	})
	s.publishOpenDialogLocked(userID, req)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"status": "OK"})
}

// handleClientConfig handles "GET /api/v4/config/client?format=old".
func (s *Server) handleClientConfig(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Query().Get("format") {
	case "old":
	case "":
		writeErr(w, r, newAppError("getClientConfig", http.StatusNotImplemented, "api.config.client.old_format.app_error", "New format for the client configuration is not supported yet. Please specify format=old in the query string."))
		return
	default:
		writeErr(w, r, invalidURLParam("format"))
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{
		"Version":                    "6.7.2",
		"BuildNumber":                "6.7.2",
		"SiteURL":                    s.URL,
		"SiteName":                   "Mattermost",
		"AsymmetricSigningPublicKey": s.SigningPublicKey(),
		"EnableBotAccountCreation":   "true",
		"EnablePostUsernameOverride": "false",
		"EnablePostIconOverride":     "false",
	})
}

// handleCommandHook handles "POST /hooks/commands/{hook_id}", a slash
// command's response_url: 5 uses within 30 minutes, JSON bodies only
// (anything else becomes the text of an ephemeral post).
func (s *Server) handleCommandHook(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("hook_id")
	body, _ := io.ReadAll(r.Body)
	ct := r.Header.Get("Content-Type")
	call := HookCall{HookID: id, ContentType: ct, Body: body}
	record := func(status int) {
		call.Status = status
		s.mu.Lock()
		s.hookCalls = append(s.hookCalls, call)
		s.mu.Unlock()
	}

	s.mu.Lock()
	h := s.hooks[id]
	if h == nil {
		s.mu.Unlock()
		record(http.StatusNotFound)
		writeErr(w, r, newAppError("HandleCommandWebhook", http.StatusNotFound, "app.command_webhook.get.missing", "Unable to find the webhook."))
		return
	}
	if h.uses >= CommandWebhookMaxUses || s.now().Sub(h.createdAt) > CommandWebhookLifetime {
		s.mu.Unlock()
		record(http.StatusBadRequest)
		writeErr(w, r, newAppError("HandleCommandWebhook", http.StatusBadRequest, "app.command_webhook.try_use.invalid", "Invalid webhook."))
		return
	}
	h.uses++
	s.mu.Unlock()

	var resp *model.CommandResponse
	mt, _, _ := mime.ParseMediaType(ct)
	if mt == "application/json" {
		var err error
		resp, err = model.CommandResponseFromJSON(strings.NewReader(string(body)))
		if err != nil {
			record(http.StatusBadRequest)
			writeErr(w, r, newAppError("HandleCommandWebhook", http.StatusBadRequest, "app.command_webhook.handle_command_webhook.parse", "Unable to parse incoming data."))
			return
		}
	} else {
		resp = model.CommandResponseFromPlainText(string(body))
	}
	call.Response = resp
	s.mu.Lock()
	s.applyCommandResponseLocked(h.userID, h.channelID, resp, "response_url")
	s.mu.Unlock()
	record(http.StatusOK)
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok"))
}

// applyCommandResponseLocked shows a command reply: in_channel is posted as
// the invoking user (props.from_webhook), anything else is ephemeral.
func (s *Server) applyCommandResponseLocked(userID, channelID string, resp *model.CommandResponse, source string) {
	all := append([]*model.CommandResponse{resp}, resp.ExtraResponses...)
	for _, cr := range all {
		if cr == nil || (cr.Text == "" && len(cr.Attachments) == 0) {
			continue
		}
		u := s.users[userID]
		cid := channelID
		if cr.ChannelId != "" && s.channels[cr.ChannelId] != nil {
			cid = cr.ChannelId
		}
		p := &model.Post{ChannelId: cid, Message: cr.Text, Type: cr.Type}
		p.SetProps(model.StringInterface{})
		for k, v := range cr.Props {
			p.AddProp(k, v)
		}
		if len(cr.Attachments) > 0 {
			p.AddProp(model.PostPropsAttachments, cr.Attachments)
		}
		if cr.ResponseType == model.CommandResponseTypeInChannel {
			// Custom commands post as a webhook; user name and icon
			// overrides are off (EnablePostUsernameOverride and
			// EnablePostIconOverride are false, as the client config says).
			p.AddProp("from_webhook", "true")
			if _, err := s.createPostLocked(u, p, source); err != nil {
				s.tb.Logf("mmtest: in_channel reply not posted: %v", err.Message)
			}
			continue
		}
		p.Id = model.NewId()
		p.UserId = userID
		p.Type = model.PostTypeEphemeral
		p.CreateAt = s.millis()
		s.ephemerals = append(s.ephemerals, Ephemeral{
			UserID: userID, Username: u.Username, ChannelID: cid, Message: cr.Text,
			Source: source, Post: p,
		})
		s.publishEphemeralLocked(userID, p)
	}
}

// sortedIDs is a helper for deterministic iteration in tests.
func sortedIDs[V any](m map[string]V) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// isAlphanumeric reports whether s is one or more ASCII letters and digits.
func isAlphanumeric(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return s != ""
}
