package archive

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/ica-governance/ica"
)

// Create stores data as the blob prefix+name only if no such blob exists
// (If-None-Match: *), and returns its URL. A blob that already holds the
// same bytes is success (a retry whose first answer was lost); one that
// holds other bytes is an ica.ECONFLICT error that says so: a small,
// write-once record (a witnessed checkpoint) is never replaced.
func (a *Archive) Create(ctx context.Context, name string, data []byte, contentType string) (string, error) {
	url, err := a.Upload(ctx, name, bytes.NewReader(data), contentType, nil)
	if ica.ErrorCode(err) != ica.ECONFLICT {
		return url, err
	}
	got, rerr := a.Read(ctx, name, int64(len(data))+1)
	if rerr != nil {
		return "", rerr
	}
	if bytes.Equal(got, data) {
		return a.blobURL(a.prefix + name), nil
	}
	return "", &ica.Error{Code: ica.ECONFLICT, Field: "name",
		Message: fmt.Sprintf("archive %s/%s%s already exists with different content; it is never overwritten", a.name, a.prefix, name),
		Cause:   err}
}

// Read returns the blob prefix+name, refusing one larger than limit bytes.
func (a *Archive) Read(ctx context.Context, name string, limit int64) ([]byte, error) {
	rc, err := a.Download(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, &ica.Error{Code: ica.ETOOLARGE, Message: fmt.Sprintf("archive %s/%s%s is larger than %d bytes", a.name, a.prefix, name, limit)}
	}
	return b, nil
}

// List returns the names of the blobs that start with prefix (after the
// archive's own prefix, which the names do not include), in name order. A
// container that does not exist yet holds nothing.
func (a *Archive) List(ctx context.Context, prefix string) ([]string, error) {
	full := a.prefix + prefix
	pager := a.container.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &full})
	var out []string
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			if bloberror.HasCode(err, bloberror.ContainerNotFound) {
				return nil, nil
			}
			return nil, a.classify(ctx, fmt.Sprintf("list %s in the blob archive", full), err)
		}
		for _, it := range page.Segment.BlobItems {
			if it.Name != nil {
				out = append(out, strings.TrimPrefix(*it.Name, a.prefix))
			}
		}
	}
	return out, nil
}

// BlobURL returns the URL of the blob prefix+name (without any SAS query).
func (a *Archive) BlobURL(name string) string { return a.blobURL(a.prefix + name) }
