package bot

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/mattermost/mattermost/server/public/model"

	"github.com/ica-governance/ica"
)

// KindCheckpointPost posts a signed checkpoint in the checkpoint channel
// (ICA_CHECKPOINT_CHANNEL): a second witness, outside the ledger's storage,
// that people see.
const KindCheckpointPost = "checkpoint.post"

// propCheckpoint marks the post of one checkpoint, so a retry finds it.
const propCheckpoint = "ica_checkpoint"

type checkpointPayload struct {
	Channel string `json:"channel"`
	Size    uint64 `json:"size"`
	Root    string `json:"root"`
	Origin  string `json:"origin"`
	Note    string `json:"note"`
}

// CheckpointMessage returns the outbox message that posts cp in channel
// (nil when cp has no signed note).
func CheckpointMessage(channel, ledgerID string, cp *ica.Checkpoint) *ica.OutboxMessage {
	if cp.Note == "" || channel == "" {
		return nil
	}
	raw, _ := json.Marshal(checkpointPayload{Channel: channel, Size: cp.Seq, Root: cp.Root, Origin: cp.Origin, Note: cp.Note})
	return &ica.OutboxMessage{Destination: Destination, Kind: KindCheckpointPost,
		Key: fmt.Sprintf("checkpoint-post:%s:%d", ledgerID, cp.Seq), Payload: raw}
}

// deliverCheckpoint posts the checkpoint once: a retry first looks for the
// post it may have made before a lost answer.
func (b *Bot) deliverCheckpoint(ctx context.Context, msg *ica.OutboxMessage) (bool, error) {
	var p checkpointPayload
	if err := json.Unmarshal(msg.Payload, &p); err != nil {
		return false, fmt.Errorf("outbox message %d: bad payload: %w", msg.ID, err)
	}
	chID, retry, err := b.lookupChannel(ctx, p.Channel)
	if err != nil {
		return retry, err
	}
	api := b.client.API()
	if msg.Attempts > 0 {
		list, retry, err := call(ctx, "list recent posts", func(ctx context.Context) (*model.PostList, *model.Response, error) {
			return api.GetPostsForChannel(ctx, chID, 0, 200, "", false, false)
		})
		if err != nil {
			return retry, err
		}
		for _, post := range list.Posts {
			if post.UserId == b.botUser().Id && fmt.Sprint(post.GetProp(propCheckpoint)) == msg.Key {
				return false, nil
			}
		}
	}
	text := fmt.Sprintf("Ledger checkpoint: **%d entries**, Merkle root `%s`\n```\n%s```", p.Size, p.Root, p.Note)
	np := &model.Post{ChannelId: chID, Message: text, PendingPostId: b.pendingID(msg.Key, msg)}
	np.AddProp(propCheckpoint, msg.Key)
	_, retry, err = call(ctx, "post the checkpoint", func(ctx context.Context) (*model.Post, *model.Response, error) {
		return api.CreatePost(ctx, np)
	})
	return retry, err
}
