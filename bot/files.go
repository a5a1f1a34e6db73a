package bot

import (
	"context"
	"fmt"
	"io"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/ica-governance/ica"
)

// MaxFileBytes is the largest file the bot uploads (Mattermost's default
// FileSettings.MaxFileSize is 100 MB); larger exports go to the archive only.
const MaxFileBytes = 100 << 20

// PostFile uploads a file to a channel and posts it with a message, as the
// bot (an export must come from ICA, not from the user who asked).
func (b *Bot) PostFile(ctx context.Context, channelID, filename string, r io.Reader, message string) (string, error) {
	if err := b.Ready(ctx); err != nil {
		return "", ica.Unavailable("Mattermost is not connected", err)
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return "", err
	}
	if len(data) > MaxFileBytes {
		return "", ica.Errorf(ica.ETOOLARGE, "%s is larger than %d MB, too large to post in Mattermost; use the archive copy", filename, MaxFileBytes>>20)
	}
	api := b.client.API()
	up, _, err := call(ctx, "upload "+filename, func(ctx context.Context) (*model.FileUploadResponse, *model.Response, error) {
		return api.UploadFile(ctx, data, channelID, filename)
	})
	if err != nil {
		return "", err
	}
	if len(up.FileInfos) == 0 {
		return "", fmt.Errorf("mattermost accepted %s but returned no file id", filename)
	}
	post := &model.Post{ChannelId: channelID, Message: message, FileIds: model.StringArray{up.FileInfos[0].Id}}
	created, _, err := call(ctx, "post "+filename, func(ctx context.Context) (*model.Post, *model.Response, error) {
		return api.CreatePost(ctx, post)
	})
	if err != nil {
		return "", err
	}
	return created.Id, nil
}
