package export

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPDF_Render writes a sample report to $ICA_PDF_OUT for looking at.
func TestPDF_Render(t *testing.T) {
	out := os.Getenv("ICA_PDF_OUT")
	if out == "" {
		t.Skip("set ICA_PDF_OUT to write a sample PDF")
	}
	c := sample(t, 120)
	b, _ := mustExport(t, FormatPDF, c.entries, c.head())
	require.NoError(t, os.WriteFile(out, b, 0o644))
	mustVerifyOK(t, b)
}
