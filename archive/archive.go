// Package archive keeps copies of audit exports in Azure Blob Storage.
//
// An Archive writes each export once, as a block blob, under a name the
// caller chooses (usually the export file name). It never overwrites: every
// write is conditional on the blob not existing (If-None-Match: *), so two
// exports that would get the same name make the second one fail loudly with
// ica.ECONFLICT rather than silently replacing an audit record.
//
// Credentials: in production, set Config.AccountURL
// ("https://<account>.blob.core.windows.net/") and let New use
// azidentity.DefaultAzureCredential (environment, workload identity, managed
// identity, Azure CLI), or pass a credential such as
// azidentity.NewManagedIdentityCredential. For the Azurite emulator and for
// accounts without Entra ID, set Config.ConnectionString instead. The
// account key (or SAS signature) in a connection string never appears in an
// error message.
//
// Integrity: the blob's Content-MD5 is computed before the upload, sent as
// the transactional Content-MD5 of a single Put Blob (the service rejects a
// corrupted body) or stored as the blob's Content-MD5 when a large export is
// sent in blocks (each block carries its own transactional MD5), and
// Download checks the bytes it returns against it.
//
// Errors are *ica.Error: ica.EUNAVAILABLE for failures that retrying later
// may cure (network, 408, 429, 5xx, credentials that cannot get a token
// yet), with the cause wrapped; ica.ECONFLICT for a name that is taken;
// ica.ENOTFOUND for a missing blob; ica.EFORBIDDEN when the account refuses
// ICA's credentials; ica.EINVALID for bad names and configuration.
package archive

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/ica-governance/ica"
)

// DefaultContainer is the container used when Config.Container is empty.
const DefaultContainer = "ica-exports"

// DefaultRetries is how many times a failed request is retried when
// Config.Retries is zero.
const DefaultRetries = 4

// Retry timing handed to the SDK's retry policy: exponential backoff from
// retryDelay, capped at maxRetryDelay, each try bounded by tryTimeout. With
// DefaultRetries a dead endpoint is given up after about 15 s.
const (
	retryDelay    = 1 * time.Second
	maxRetryDelay = 10 * time.Second
	tryTimeout    = 2 * time.Minute
)

// Upload sizes. Up to singleShotMax bytes go in one Put Blob whose body the
// service checks against its Content-MD5; larger exports are staged in
// blocks of blockSize and committed with Put Block List. Variables so tests
// can exercise the block path with small files.
var (
	singleShotMax int64 = 32 << 20
	blockSize     int64 = 8 << 20
)

// uploadIDKey is the metadata entry that identifies one Upload call, so a
// retry that finds "its own" blob already written (the first try succeeded
// but its answer was lost) is recognised as success, not as a collision.
const uploadIDKey = "ica_upload_id"

// Config configures an Archive. Exactly one of ConnectionString and
// AccountURL must be set.
type Config struct {
	// ConnectionString is an Azure Storage connection string (account key
	// or SAS). It is a secret.
	ConnectionString string
	// AccountURL is the blob service URL, e.g.
	// https://myaccount.blob.core.windows.net/; requests are authenticated
	// with an Entra ID token credential.
	AccountURL string
	// Container holds the exports (default DefaultContainer). It is created
	// on first use if it does not exist.
	Container string
	// Prefix is prepended to every blob name ("exports/" → "exports/x.csv").
	Prefix string
	// Retries is how many times the SDK retries a failed request (0 means
	// DefaultRetries, a negative number means no retries).
	Retries int
}

// Archive uploads exports to one container. It is safe for concurrent use.
type Archive struct {
	container *container.Client
	name      string
	prefix    string
	secrets   []string // strings that must never appear in an error

	mu      sync.Mutex
	created bool // the container is known to exist
}

var containerPattern = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9]|-[a-z0-9]){2,62}$`)

// New returns an Archive for cfg. cred authenticates requests to
// cfg.AccountURL; nil means azidentity.DefaultAzureCredential. cred is
// ignored with a connection string. New does not contact the service; use
// Ping to check the configuration.
func New(cfg Config, cred azcore.TokenCredential) (*Archive, error) {
	a := &Archive{name: cfg.Container, prefix: cfg.Prefix}
	if a.name == "" {
		a.name = DefaultContainer
	}
	if !containerPattern.MatchString(a.name) || len(a.name) > 63 {
		return nil, ica.FieldErrorf(ica.EINVALID, "container",
			"blob container name %q must be 3 to 63 lowercase letters, digits and single hyphens", clip(a.name))
	}
	if a.prefix != "" {
		if err := validName("prefix", a.prefix+"x"); err != nil {
			return nil, err
		}
	}
	retries := int32(cfg.Retries)
	if cfg.Retries == 0 {
		retries = DefaultRetries
	}
	opts := &azblob.ClientOptions{}
	opts.Retry = policy.RetryOptions{
		MaxRetries:    retries,
		RetryDelay:    retryDelay,
		MaxRetryDelay: maxRetryDelay,
		TryTimeout:    tryTimeout,
	}
	opts.Telemetry.ApplicationID = "ica-archive"

	var (
		client *azblob.Client
		err    error
	)
	switch {
	case cfg.ConnectionString != "" && cfg.AccountURL != "":
		return nil, ica.Errorf(ica.EINVALID, "blob archive: set either a connection string or an account URL, not both")
	case cfg.ConnectionString != "":
		a.secrets = connectionStringSecrets(cfg.ConnectionString)
		client, err = azblob.NewClientFromConnectionString(cfg.ConnectionString, opts)
		if err != nil {
			// The SDK's parse errors do not quote the string, but be sure.
			return nil, &ica.Error{Code: ica.EINVALID, Message: "blob archive: the connection string is malformed",
				Cause: a.redact(err)}
		}
	case cfg.AccountURL != "":
		u, perr := url.Parse(cfg.AccountURL)
		if perr != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, ica.FieldErrorf(ica.EINVALID, "account_url", "blob archive: account URL %q is not an http(s) URL", clip(stripQuery(cfg.AccountURL)))
		}
		if u.RawQuery != "" {
			a.secrets = append(a.secrets, u.RawQuery)
		}
		if cred == nil {
			cred, err = azidentity.NewDefaultAzureCredential(nil)
			if err != nil {
				return nil, &ica.Error{Code: ica.EINVALID, Message: "blob archive: no Azure credential is available", Cause: a.redact(err)}
			}
		}
		client, err = azblob.NewClient(cfg.AccountURL, cred, opts)
		if err != nil {
			return nil, &ica.Error{Code: ica.EINVALID, Message: "blob archive: cannot use the account URL", Cause: a.redact(err)}
		}
	default:
		return nil, ica.Errorf(ica.EINVALID, "blob archive is not configured: set a connection string or an account URL")
	}
	a.container = client.ServiceClient().NewContainerClient(a.name)
	return a, nil
}

// Container returns the container name.
func (a *Archive) Container() string { return a.name }

// URL returns the container's URL without any SAS query.
func (a *Archive) URL() string { return stripQuery(a.container.URL()) }

// Ping checks that the service answers and accepts ICA's credentials. A
// container that does not exist yet is fine: Upload creates it.
func (a *Archive) Ping(ctx context.Context) error {
	_, err := a.container.GetProperties(ctx, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerNotFound) {
		return a.classify(ctx, "reach the blob archive", err)
	}
	return nil
}

// ensureContainer creates the container once per Archive; a container that
// already exists is success.
func (a *Archive) ensureContainer(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.created {
		return nil
	}
	_, err := a.container.Create(ctx, nil)
	if err != nil && !bloberror.HasCode(err, bloberror.ContainerAlreadyExists, bloberror.ContainerBeingDeleted) {
		return a.classify(ctx, fmt.Sprintf("create blob container %s", a.name), err)
	}
	a.created = true
	return nil
}

// Upload stores r as the block blob prefix+name and returns its URL (without
// any SAS query). It fails with ica.ECONFLICT if the blob already exists.
// contentType may be empty (application/octet-stream). Metadata names must
// be C# identifiers and values ASCII (Azure's rules).
//
// If r is an *os.File or another io.ReaderAt + io.Seeker, it is read from its
// current offset to its end without copying; otherwise it is first spooled
// to a temporary file, so that the MD5 is known before the upload and every
// retry can resend the same bytes.
func (a *Archive) Upload(ctx context.Context, name string, r io.Reader, contentType string, metadata map[string]string) (string, error) {
	full := a.prefix + name
	if err := validName("name", full); err != nil {
		return "", err
	}
	md, err := blobMetadata(metadata)
	if err != nil {
		return "", err
	}
	id := newUploadID()
	md[uploadIDKey] = &id
	if contentType == "" {
		contentType = "application/octet-stream"
	}

	src, size, cleanup, err := seekable(r)
	if err != nil {
		return "", err
	}
	defer cleanup()
	sum, err := md5Section(src, size)
	if err != nil {
		return "", ica.Unavailable("read the export to archive", err)
	}

	if err := a.ensureContainer(ctx); err != nil {
		return "", err
	}
	bb := a.container.NewBlockBlobClient(full)
	headers := &blob.HTTPHeaders{BlobContentType: &contentType, BlobContentMD5: sum}
	noOverwrite := &blob.AccessConditions{ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to(azcore.ETagAny)}}

	if size <= singleShotMax {
		var resp blockblob.UploadResponse
		resp, err = bb.Upload(ctx, nopCloser(io.NewSectionReader(src, 0, size)), &blockblob.UploadOptions{
			Metadata:                md,
			HTTPHeaders:             headers,
			AccessConditions:        noOverwrite,
			TransactionalValidation: blob.TransferValidationTypeMD5(sum),
		})
		if err == nil && len(resp.ContentMD5) > 0 && !bytes.Equal(resp.ContentMD5, sum) {
			return "", ica.Unavailable(fmt.Sprintf("archive %s: the service stored a different MD5 than was sent", full),
				fmt.Errorf("content-md5 sent %x, stored %x", sum, resp.ContentMD5))
		}
	} else {
		err = a.uploadBlocks(ctx, bb, src, size, id, &blockblob.CommitBlockListOptions{
			Metadata: md, HTTPHeaders: headers, AccessConditions: noOverwrite,
		})
	}
	if err != nil {
		if bloberror.HasCode(err, bloberror.BlobAlreadyExists, bloberror.ConditionNotMet) {
			if a.isOwnUpload(ctx, full, id, sum) {
				return a.blobURL(full), nil
			}
			return "", &ica.Error{Code: ica.ECONFLICT, Field: "name",
				Message: fmt.Sprintf("archive %s/%s already exists; exports are never overwritten", a.name, full),
				Cause:   a.redact(err)}
		}
		if bloberror.HasCode(err, bloberror.ContainerNotFound) {
			// Deleted behind our back: create it again on the next upload.
			a.mu.Lock()
			a.created = false
			a.mu.Unlock()
		}
		return "", a.classify(ctx, fmt.Sprintf("upload %s to the blob archive", full), err)
	}
	return a.blobURL(full), nil
}

// blobURL is the blob's URL without any SAS query, with '/' in the name left
// readable (the SDK escapes it as %2F; both forms address the same blob).
func (a *Archive) blobURL(name string) string {
	segs := strings.Split(name, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return a.URL() + "/" + strings.Join(segs, "/")
}

// uploadBlocks stages src in blocks, each checked by the service against its
// MD5 (CRC64 would be cheaper, but Azurite refuses it), and commits them;
// the commit carries the no-overwrite condition.
func (a *Archive) uploadBlocks(ctx context.Context, bb *blockblob.Client, src io.ReaderAt, size int64, uploadID string, commit *blockblob.CommitBlockListOptions) error {
	var ids []string
	for off, n := int64(0), 0; off < size; off, n = off+blockSize, n+1 {
		l := min(blockSize, size-off)
		// Block ids must all have the same length; the upload id keeps blocks
		// of a concurrent upload to the same name apart.
		raw := make([]byte, 0, 32)
		raw = append(raw, uploadID[:16]...)
		raw = binary.BigEndian.AppendUint64(raw, uint64(n))
		bid := base64.StdEncoding.EncodeToString(raw)
		sum, err := md5Section(io.NewSectionReader(src, off, l), l)
		if err != nil {
			return err
		}
		if _, err := bb.StageBlock(ctx, bid, nopCloser(io.NewSectionReader(src, off, l)), &blockblob.StageBlockOptions{
			TransactionalValidation: blob.TransferValidationTypeMD5(sum),
		}); err != nil {
			return err
		}
		ids = append(ids, bid)
	}
	if len(ids) == 0 {
		// Unreachable in practice (empty bodies take the single-shot path).
		return errors.New("no blocks to commit")
	}
	_, err := bb.CommitBlockList(ctx, ids, commit)
	return err
}

// isOwnUpload reports whether the existing blob is the one this Upload call
// wrote (a retried request whose first attempt succeeded).
func (a *Archive) isOwnUpload(ctx context.Context, name, id string, sum []byte) bool {
	p, err := a.container.NewBlobClient(name).GetProperties(ctx, nil)
	if err != nil {
		return false
	}
	for k, v := range p.Metadata {
		if strings.EqualFold(k, uploadIDKey) && v != nil && *v == id {
			return bytes.Equal(p.ContentMD5, sum)
		}
	}
	return false
}

// Download returns the blob prefix+name. The reader resumes an interrupted
// download and, when the blob has a Content-MD5, fails at the end of the
// data if the bytes read do not match it. The caller closes it.
func (a *Archive) Download(ctx context.Context, name string) (io.ReadCloser, error) {
	full := a.prefix + name
	if err := validName("name", full); err != nil {
		return nil, err
	}
	resp, err := a.container.NewBlobClient(full).DownloadStream(ctx, nil)
	if err != nil {
		if bloberror.HasCode(err, bloberror.BlobNotFound, bloberror.ContainerNotFound) {
			return nil, &ica.Error{Code: ica.ENOTFOUND, Message: fmt.Sprintf("archive %s/%s does not exist", a.name, full), Cause: a.redact(err)}
		}
		return nil, a.classify(ctx, fmt.Sprintf("download %s from the blob archive", full), err)
	}
	body := resp.NewRetryReader(ctx, &blob.RetryReaderOptions{MaxRetries: DefaultRetries})
	if len(resp.ContentMD5) == 0 {
		return &downloadReader{rc: body, a: a, name: full}, nil
	}
	return &downloadReader{rc: body, a: a, name: full, want: resp.ContentMD5, h: md5.New()}, nil
}

// downloadReader checks the MD5 of what it returns at EOF.
type downloadReader struct {
	rc   io.ReadCloser
	a    *Archive
	name string
	want []byte
	h    hash.Hash
}

func (d *downloadReader) Read(p []byte) (int, error) {
	n, err := d.rc.Read(p)
	if d.h != nil {
		d.h.Write(p[:n])
	}
	switch {
	case err == io.EOF && d.h != nil:
		if got := d.h.Sum(nil); !bytes.Equal(got, d.want) {
			return n, &ica.Error{Code: ica.EUNAVAILABLE,
				Message: fmt.Sprintf("archive %s: downloaded bytes do not match the blob's Content-MD5", d.name),
				Cause:   fmt.Errorf("md5 %x, expected %x", got, d.want)}
		}
	case err != nil && err != io.EOF:
		return n, d.a.classify(context.Background(), fmt.Sprintf("download %s from the blob archive", d.name), err)
	}
	return n, err
}

func (d *downloadReader) Close() error { return d.rc.Close() }

// ---- errors ------------------------------------------------------------------

// classify turns an SDK or transport error into an *ica.Error with a safe
// message and the redacted cause.
func (a *Archive) classify(ctx context.Context, what string, err error) error {
	cause := a.redact(err)
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		detail := fmt.Sprintf("HTTP %d", re.StatusCode)
		if re.ErrorCode != "" {
			detail += " " + re.ErrorCode
		}
		msg := fmt.Sprintf("could not %s (%s)", what, detail)
		code := ica.EINTERNAL
		switch s := re.StatusCode; {
		case s == 408 || s == 429 || s >= 500:
			code = ica.EUNAVAILABLE
		case s == 401 || s == 403:
			code, msg = ica.EFORBIDDEN, fmt.Sprintf("could not %s: the storage account refused ICA's credentials (%s)", what, detail)
		case s == 404:
			code = ica.ENOTFOUND
		case s == 409 || s == 412:
			code = ica.ECONFLICT
		case s == 413:
			code = ica.ETOOLARGE
		case s == 400:
			code = ica.EINVALID
		}
		return &ica.Error{Code: code, Message: msg, Cause: cause}
	}
	var cu *azidentity.AuthenticationFailedError
	if errors.As(err, &cu) {
		return &ica.Error{Code: ica.EUNAVAILABLE, Message: fmt.Sprintf("could not %s: no Azure token (check the managed identity)", what), Cause: cause}
	}
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return &ica.Error{Code: ica.EUNAVAILABLE, Message: fmt.Sprintf("could not %s: %v", what, ctx.Err()), Cause: cause}
	}
	// Network errors, timeouts, a credential that is not available yet: all
	// worth trying again later.
	return &ica.Error{Code: ica.EUNAVAILABLE, Message: fmt.Sprintf("could not %s: the service is unreachable", what), Cause: cause}
}

// redactedError carries an error whose text had secrets removed. It unwraps
// to the original so callers can still use errors.Is/As; any *url.Error in
// the chain has had its query (a SAS signature) removed as well.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

func (a *Archive) redact(err error) error {
	if err == nil {
		return nil
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if ue, ok := e.(*url.Error); ok {
			ue.URL = stripQuery(ue.URL)
		}
	}
	msg := err.Error()
	for _, s := range a.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "[REDACTED]")
		}
	}
	msg = sigPattern.ReplaceAllString(msg, "${1}[REDACTED]")
	return &redactedError{msg: msg, err: err}
}

var sigPattern = regexp.MustCompile(`(?i)((?:sig|accountkey|sharedaccesssignature)=)[^&;\s"]+`)

// connectionStringSecrets returns the parts of a connection string that must
// not be shown: the account key (and its URL-escaped forms) and the SAS.
func connectionStringSecrets(cs string) []string {
	var out []string
	for _, kv := range strings.Split(cs, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			continue
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "accountkey", "sharedaccesssignature":
			out = append(out, v, url.QueryEscape(v), url.PathEscape(v))
		}
	}
	return out
}

func stripQuery(s string) string {
	if i := strings.IndexByte(s, '?'); i >= 0 {
		return s[:i]
	}
	return s
}

// ---- input -------------------------------------------------------------------

// validName checks a blob name: 1 to 1024 characters, no control
// characters or backslashes, no "." or ".." segments, not ending in "/".
func validName(field, s string) error {
	switch {
	case s == "":
		return ica.FieldErrorf(ica.EINVALID, field, "blob name is required")
	case len(s) > 1024:
		return ica.FieldErrorf(ica.EINVALID, field, "blob name is longer than 1024 bytes")
	case !utf8.ValidString(s):
		return ica.FieldErrorf(ica.EINVALID, field, "blob name is not valid UTF-8")
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }):
		return ica.FieldErrorf(ica.EINVALID, field, "blob name %q contains control characters or backslashes", clip(s))
	case strings.HasSuffix(s, "/") || strings.HasSuffix(s, "."):
		return ica.FieldErrorf(ica.EINVALID, field, "blob name %q must not end in '/' or '.'", clip(s))
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == "." || seg == ".." {
			return ica.FieldErrorf(ica.EINVALID, field, "blob name %q must not contain '.' or '..' segments", clip(s))
		}
	}
	return nil
}

var metaKeyPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func blobMetadata(m map[string]string) (map[string]*string, error) {
	out := make(map[string]*string, len(m)+1)
	for k, v := range m {
		if !metaKeyPattern.MatchString(k) || strings.EqualFold(k, uploadIDKey) {
			return nil, ica.FieldErrorf(ica.EINVALID, "metadata", "metadata name %q must be a letter or '_' followed by letters, digits or '_'", clip(k))
		}
		for i := 0; i < len(v); i++ {
			if v[i] < 0x20 || v[i] > 0x7e {
				return nil, ica.FieldErrorf(ica.EINVALID, "metadata", "metadata %s must be printable ASCII", k)
			}
		}
		out[k] = &v
	}
	return out, nil
}

func clip(s string) string {
	if len(s) <= 80 {
		return s
	}
	return s[:80] + "…"
}

// ---- bytes -------------------------------------------------------------------

type readerAtSeeker interface {
	io.ReaderAt
	io.Seeker
}

// seekable returns r as a ReaderAt over exactly the bytes from its current
// offset to its end, spooling to a temporary file when r cannot seek.
func seekable(r io.Reader) (io.ReaderAt, int64, func(), error) {
	if rs, ok := r.(readerAtSeeker); ok {
		start, err := rs.Seek(0, io.SeekCurrent)
		if err == nil {
			end, err2 := rs.Seek(0, io.SeekEnd)
			if err2 == nil {
				if _, err := rs.Seek(start, io.SeekStart); err != nil {
					return nil, 0, nil, ica.Unavailable("read the export to archive", err)
				}
				return io.NewSectionReader(rs, start, end-start), end - start, func() {}, nil
			}
		}
	}
	f, err := os.CreateTemp("", "ica-archive-*")
	if err != nil {
		return nil, 0, nil, ica.Unavailable("spool the export to archive", err)
	}
	cleanup := func() { _ = f.Close(); _ = os.Remove(f.Name()) }
	n, err := io.Copy(f, r)
	if err != nil {
		cleanup()
		return nil, 0, nil, ica.Unavailable("spool the export to archive", err)
	}
	return f, n, cleanup, nil
}

func md5Section(r io.ReaderAt, size int64) ([]byte, error) {
	h := md5.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, size)); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// nopCloser gives the SDK a ReadSeekCloser; the SDK closes bodies after
// sending, which must not close the caller's file.
func nopCloser(s *io.SectionReader) io.ReadSeekCloser { return streaming.NopCloser(s) }

func newUploadID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func to[T any](v T) *T { return &v }
