package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/ica-governance/ica/bot"
	"github.com/ica-governance/ica/slashcmds"
	"github.com/ica-governance/ica/webhooks"
)

// CallbackConfig guards Mattermost's callbacks: where they are served, who
// may send them, and how clicks and commands prove their user.
type CallbackConfig struct {
	// Addr, when set, serves /mattermost/* on its own listener (and only
	// there), so a network policy can let only the Mattermost server reach
	// that port (ICA_CALLBACK_ADDR).
	Addr string `yaml:"addr"`
	// AllowedCIDRs, when set, refuses /mattermost/* from any other source
	// address (ICA_CALLBACK_ALLOWED_CIDRS).
	AllowedCIDRs []string `yaml:"allowed_cidrs"`
	// MattermostSigningKey is the server's public key for trigger_ids
	// (AsymmetricSigningPublicKey, base64 DER); empty: fetched from the
	// server (ICA_MATTERMOST_SIGNING_KEY).
	MattermostSigningKey string `yaml:"mattermost_signing_key"`
	// ApproverRefresh is how often approver usernames are resolved to user
	// ids again (ICA_APPROVER_REFRESH, default 10m).
	ApproverRefresh time.Duration `yaml:"approver_refresh"`
}

func (c *Config) applyCallbackEnv(getenv func(string) string) error {
	if v := getenv("ICA_INSTANCE_NAME"); v != "" {
		c.InstanceName = v
	}
	if v := getenv("ICA_CALLBACK_ADDR"); v != "" {
		c.Callbacks.Addr = v
	}
	if v := getenv("ICA_CALLBACK_ALLOWED_CIDRS"); v != "" {
		c.Callbacks.AllowedCIDRs = splitList(v)
	}
	if v := getenv("ICA_MATTERMOST_SIGNING_KEY"); v != "" {
		c.Callbacks.MattermostSigningKey = v
	}
	if v := getenv("ICA_APPROVER_REFRESH"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("ICA_APPROVER_REFRESH=%q is not a duration such as 10m", v)
		}
		c.Callbacks.ApproverRefresh = d
	}
	return nil
}

func (c *Config) validateCallbacks() error {
	if len(c.InstanceName) > 64 {
		return fmt.Errorf("instance_name (ICA_INSTANCE_NAME) is longer than 64 characters")
	}
	if c.Callbacks.Addr != "" {
		if _, _, err := net.SplitHostPort(c.Callbacks.Addr); err != nil {
			return fmt.Errorf("callbacks.addr (ICA_CALLBACK_ADDR) %q is not host:port", c.Callbacks.Addr)
		}
		if c.Callbacks.Addr == c.Addr {
			return fmt.Errorf("callbacks.addr (ICA_CALLBACK_ADDR) must differ from addr (ICA_ADDR)")
		}
	}
	if _, err := webhooks.ParseCIDRs(c.Callbacks.AllowedCIDRs); err != nil {
		return fmt.Errorf("callbacks.allowed_cidrs (ICA_CALLBACK_ALLOWED_CIDRS): %w", err)
	}
	if k := c.Callbacks.MattermostSigningKey; k != "" {
		if _, err := bot.ParseSigningKey(k); err != nil {
			return fmt.Errorf("callbacks.mattermost_signing_key (ICA_MATTERMOST_SIGNING_KEY): %w", err)
		}
	}
	if c.Callbacks.ApproverRefresh < time.Minute {
		return fmt.Errorf("callbacks.approver_refresh (ICA_APPROVER_REFRESH) must be at least 1m")
	}
	return nil
}

// slashCallers proves who ran an /ica command through the bot (trigger_id
// verified, user read from Mattermost).
type slashCallers struct{ mm *bot.Bot }

func (s slashCallers) VerifyCaller(ctx context.Context, triggerID, userID string) (slashcmds.Caller, error) {
	u, err := s.mm.Verify(ctx, "command", triggerID, userID)
	if err != nil {
		return slashcmds.Caller{}, err
	}
	return slashcmds.Caller{UserID: u.Id, Username: u.Username, Email: u.Email}, nil
}
