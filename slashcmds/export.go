package slashcmds

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ica-governance/ica"
	"github.com/ica-governance/ica/export"
)

// exportJob is one export running in the background.
type exportJob struct {
	call *call
	q    ExportQuery
	n    int
}

// export answers "/ica export …": it checks the request, counts the records,
// answers at once and leaves the work to a goroutine owned by the Handler.
func (h *Handler) export(ctx context.Context, c *call) (string, error) {
	if !h.exportConfigured() {
		h.log.Info("export refused: nobody may export until ICA_EXPORT_USERS or ICA_EXPORT_CHANNELS is set", "user_name", c.UserName)
		return "", ica.Errorf(ica.EFORBIDDEN, "Nobody may export the ledger from Mattermost yet: an administrator "+
			"names who may in ICA_EXPORT_USERS or ICA_EXPORT_CHANNELS.")
	}
	if !h.mayExport(c) {
		h.log.Info("export refused: user not allowed", "user_name", c.UserName, "channel_name", c.ChannelName)
		return "", ica.Errorf(ica.EFORBIDDEN, "You are not allowed to export the ledger here. "+
			"Ask an administrator, or run the export in a channel that allows it.")
	}
	q, err := parseExport(c.Args, c.At)
	if err != nil {
		return "", err
	}
	q.RequestedBy = c.UserName

	// Take a slot before counting, so that a refusal costs nothing.
	h.mu.Lock()
	closed := h.closed
	h.mu.Unlock()
	if closed {
		return "", ica.Errorf(ica.EUNAVAILABLE, "ICA is shutting down; run the export again in a minute.")
	}
	select {
	case h.sem <- struct{}{}:
	default:
		return "", ica.Errorf(ica.ERATELIMIT, "%d exports are already running; please wait for them to finish and try again.", cap(h.sem))
	}
	release := func() { <-h.sem }

	cctx, cancel := context.WithTimeout(ctx, queryTimeout)
	n, err := h.d.Exporter.Count(cctx, q)
	cancel()
	if err != nil {
		release()
		return "", err
	}

	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		release()
		return "", ica.Errorf(ica.EUNAVAILABLE, "ICA is shutting down; run the export again in a minute.")
	}
	h.wg.Add(1)
	h.mu.Unlock()
	job := &exportJob{call: c, q: q, n: n}
	go func() {
		defer h.wg.Done()
		defer release()
		h.runExport(job)
	}()

	what := fmt.Sprintf("%d ledger records", n)
	switch n {
	case 0:
		what = "0 ledger records (there are none in this period, so the file will hold only the signed manifest)"
	case 1:
		what = "1 ledger record"
	}
	filter := ""
	if q.Pipeline != "" {
		filter = " of pipeline " + mdCode(clip(q.Pipeline, 80))
	}
	return fmt.Sprintf("Exporting %s%s from %s as %s; the file will be posted here.",
		what, filter, period(q), strings.ToUpper(q.Format)), nil
}

// runExport writes the export to a temporary file, archives it and posts it.
// Every failure reaches the user (response_url) or the log.
func (h *Handler) runExport(job *exportJob) {
	ctx, cancel := context.WithTimeout(h.ctx, h.d.ExportTimeout)
	defer cancel()
	c, q := job.call, job.q
	log := h.log.With("user_name", c.UserName, "channel_id", c.ChannelID, "from", q.From, "to", q.To, "format", q.Format)

	f, err := os.CreateTemp(h.d.TempDir, "ica-export-*"+extension(q.Format))
	if err != nil {
		h.fail(job, "The export could not start: ICA cannot write its temporary file.", err)
		return
	}
	defer func() { _ = f.Close(); _ = os.Remove(f.Name()) }()

	m, err := h.d.Exporter.Export(ctx, q, f)
	if err == nil && m == nil {
		err = ica.Errorf(ica.EINTERNAL, "exporter returned no manifest")
	}
	if err != nil {
		h.fail(job, "The export from "+period(q)+" failed: "+publicMessage(err, ctx), err)
		return
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		h.fail(job, "The export failed while reading its temporary file.", err)
		return
	}
	name := fileName(q, m, h.clock.Now())

	// Archive first, so the post can carry the archive's URL.
	archived, archiveErr := "", error(nil)
	if h.d.Archiver != nil {
		archived, archiveErr = h.archive(ctx, log, name, f, size, q, m)
	}
	msg := summary(c, q, m, name, h.d.Archiver != nil, archived, archiveErr, h.d.ArchiveAttempts)

	var postID string
	err = h.retry(ctx, h.d.PostAttempts, func() error {
		var perr error
		postID, perr = h.d.Poster.PostFile(ctx, c.ChannelID, name, io.NewSectionReader(f, 0, size), msg)
		return perr
	})
	if err != nil {
		text := "The export is ready but could not be posted in this channel (" + publicMessage(err, ctx) +
			"). Is the ICA bot a member of this channel?"
		if archived != "" {
			text += " It is archived at " + archived + " ."
		}
		h.fail(job, text+"\n\n"+msg, err)
		return
	}
	log.Info("export posted", "post_id", postID, "file", name, "records", m.Count, "archive", archived)
	if archiveErr != nil {
		h.followUp(c, "The export file is posted, but archiving it failed after "+
			strconv.Itoa(h.d.ArchiveAttempts)+" attempts: "+publicMessage(archiveErr, ctx))
	}
}

// archive uploads the export, retrying transient failures with backoff.
func (h *Handler) archive(ctx context.Context, log *slog.Logger, name string, f *os.File, size int64, q ExportQuery, m *export.Manifest) (string, error) {
	meta := map[string]string{
		"records":      strconv.FormatUint(m.Count, 10),
		"period_from":  q.From.Format(dateLayout),
		"period_to":    q.To.AddDate(0, 0, -1).Format(dateLayout),
		"format":       q.Format,
		"fingerprint":  m.Fingerprint,
		"head_seq":     strconv.FormatUint(m.Head.Seq, 10),
		"head_hash":    m.Head.Hash,
		"digest":       m.Digest,
		"requested_by": url.QueryEscape(q.RequestedBy),
	}
	if q.Pipeline != "" {
		meta["pipeline"] = url.QueryEscape(q.Pipeline)
	}
	var u string
	attempt := 0
	err := h.retry(ctx, h.d.ArchiveAttempts, func() error {
		attempt++
		var err error
		u, err = h.d.Archiver.Upload(ctx, name, io.NewSectionReader(f, 0, size), contentType(q.Format), meta)
		if err != nil {
			log.Warn("archive upload failed", "file", name, "attempt", attempt, "err", err)
		}
		return err
	})
	return u, err
}

// retry calls fn up to attempts times while it fails with an error that
// may pass (unavailable, rate limited, or not an *ica.Error), waiting
// RetryBackoff, then twice as long, … on the injected clock.
func (h *Handler) retry(ctx context.Context, attempts int, fn func() error) error {
	wait := h.d.RetryBackoff
	for i := 1; ; i++ {
		err := fn()
		if err == nil || i >= attempts || !retryable(err) {
			return err
		}
		select {
		case <-h.clock.After(wait):
		case <-ctx.Done():
			return ica.Unavailable("cancelled while waiting to retry", err)
		}
		wait *= 2
	}
}

func retryable(err error) bool {
	switch ica.ErrorCode(err) {
	case ica.EUNAVAILABLE, ica.ERATELIMIT, ica.EINTERNAL:
		return true
	}
	return false
}

// publicMessage is what a user may read about err.
func publicMessage(err error, ctx context.Context) string {
	if ctx.Err() != nil {
		return "ICA stopped or the export took too long (" + ctx.Err().Error() + ")"
	}
	return ica.ErrorMessage(err)
}

// fail reports a failed export to the user and the log.
func (h *Handler) fail(job *exportJob, text string, err error) {
	h.log.Error("export failed", "user_name", job.call.UserName, "channel_id", job.call.ChannelID, "err", err)
	h.followUp(job.call, text)
}

// summary is the message posted with the export file.
func summary(c *call, q ExportQuery, m *export.Manifest, name string, haveArchive bool, archived string, archiveErr error, attempts int) string {
	var b strings.Builder
	// name is built from safe characters only (see fileName).
	fmt.Fprintf(&b, "**ICA audit export** `%s`, requested by @%s\n\n", name, oneLine(c.UserName))
	b.WriteString("| | |\n|:--|:--|\n")
	row := func(k, v string) { fmt.Fprintf(&b, "| %s | %s |\n", k, v) }
	row("Period", period(q)+" (UTC, inclusive)")
	if q.Pipeline != "" {
		row("Pipeline", mdCode(clip(q.Pipeline, 80)))
	}
	row("Format", strings.ToUpper(q.Format))
	if m.Count == 0 {
		row("Records", "none in this period: the file holds only the signed manifest")
	} else {
		row("Records", fmt.Sprintf("%d (seq %d–%d)", m.Count, m.FirstSeq, m.LastSeq))
	}
	row("Chain head", fmt.Sprintf("seq %d, hash `%s`", m.Head.Seq, oneLine(m.Head.Hash)))
	row("Digest", "`"+oneLine(m.Digest)+"`")
	row("Signing key", "`"+oneLine(m.Fingerprint)+"`")
	switch {
	case !haveArchive:
		row("Archive", "not configured (set ICA_BLOB_CONNECTION_STRING or ICA_BLOB_ACCOUNT_URL to keep a copy)")
	case archiveErr != nil:
		row("Archive", fmt.Sprintf(":warning: failed after %d attempts: %s", attempts, cell(ica.ErrorMessage(archiveErr), 300)))
	default:
		row("Archive", archived)
	}
	b.WriteString("\nCheck it offline with `ica verify " + name + "`.")
	return b.String()
}

// fileName names the export file and its archive blob. The generation
// time keeps repeated exports of one period apart; the archive refuses a
// name that is taken.
func fileName(q ExportQuery, m *export.Manifest, now time.Time) string {
	at := m.GeneratedAt
	if at.IsZero() {
		at = now
	}
	name := "ica-export_" + q.From.Format(dateLayout) + "_" + q.To.AddDate(0, 0, -1).Format(dateLayout)
	if q.Pipeline != "" {
		name += "_" + slug(q.Pipeline)
	}
	return name + "_" + at.UTC().Format("20060102T150405Z") + extension(q.Format)
}

func slug(s string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		ok := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') || r == '.' || r == '_'
		switch {
		case ok:
			b.WriteRune(r)
			dash = false
		case !dash && b.Len() > 0:
			b.WriteByte('-')
			dash = true
		}
		if b.Len() >= 40 {
			break
		}
	}
	out := strings.Trim(b.String(), "-.")
	if out == "" {
		return "pipeline"
	}
	return out
}

func extension(format string) string {
	switch format {
	case export.FormatJSON:
		return ".jsonl"
	case export.FormatPDF:
		return ".pdf"
	}
	return ".csv"
}

func contentType(format string) string {
	switch format {
	case export.FormatJSON:
		return "application/x-ndjson"
	case export.FormatPDF:
		return "application/pdf"
	}
	return "text/csv; charset=utf-8"
}

// ---- response_url ---------------------------------------------------------------

// hookUse counts the uses of one response_url.
type hookUse struct {
	created time.Time
	uses    int
}

// followUp sends an ephemeral message through the command's response_url,
// within Mattermost's limits (5 uses, 30 minutes); otherwise, or when the
// call fails, it logs the message so that nothing is lost silently.
func (h *Handler) followUp(c *call, text string) {
	if len(text) > MaxReplyBytes {
		text = truncateText(text, MaxReplyBytes)
	}
	log := h.log.With("user_name", c.UserName, "channel_id", c.ChannelID)
	target, err := h.checkResponseURL(c.ResponseURL)
	if err != nil {
		log.Error("slash command follow-up not sent: bad response_url", "err", err, "message", text)
		return
	}
	now := h.clock.Now()
	h.mu.Lock()
	for k, u := range h.hooks {
		if now.Sub(u.created) > ResponseURLLifetime {
			delete(h.hooks, k)
		}
	}
	u := h.hooks[target]
	if u == nil {
		u = &hookUse{created: c.At}
		h.hooks[target] = u
	}
	ok := u.uses < MaxResponseURLUses && now.Sub(u.created) <= ResponseURLLifetime
	if ok {
		u.uses++
	}
	h.mu.Unlock()
	if !ok {
		log.Error("slash command follow-up not sent: response_url used up or expired", "message", text)
		return
	}

	body, _ := json.Marshal(map[string]string{"response_type": "ephemeral", "text": text})
	// Follow-ups are sent even while shutting down: they report the cancellation.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(h.ctx), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		log.Error("slash command follow-up not sent", "err", err, "message", text)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.hc.Do(req)
	if err != nil {
		log.Error("slash command follow-up failed", "err", err, "message", text)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		log.Error("slash command follow-up refused", "status", resp.StatusCode, "message", text)
	}
}

// checkResponseURL accepts Mattermost's "{SiteURL}/hooks/commands/{id}",
// from the configured Mattermost origin when one is set.
func (h *Handler) checkResponseURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return "", fmt.Errorf("response_url %q is not an http(s) URL", clip(s, 200))
	}
	if !strings.Contains(u.Path, "/hooks/commands/") {
		return "", fmt.Errorf("response_url %q is not a Mattermost command hook", clip(s, 200))
	}
	if h.d.MattermostURL != "" {
		mm, err := url.Parse(h.d.MattermostURL)
		if err != nil || !strings.EqualFold(mm.Scheme, u.Scheme) || !strings.EqualFold(mm.Host, u.Host) {
			return "", fmt.Errorf("response_url %q is not on the configured Mattermost server", clip(s, 200))
		}
	}
	return u.String(), nil
}
