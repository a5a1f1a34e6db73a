package export

import (
	"bytes"
	"io"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ica-governance/ica"
)

// fuzzSeeds returns a valid export and a few broken ones.
func fuzzSeeds(tb testing.TB, format string) [][]byte {
	c := sample(tb, 3)
	b, _ := mustExport(tb, format, c.entries, c.head())
	empty, _ := mustExport(tb, format, nil, newChain(tb).head())
	return [][]byte{b, empty, b[:len(b)/2], b[:len(b)-10], bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))}
}

// FuzzVerifyCSV feeds arbitrary bytes to the CSV parser: it must not panic
// and must never call a modified export valid unless it still verifies.
func FuzzVerifyCSV(f *testing.F) {
	for _, s := range fuzzSeeds(f, FormatCSV) {
		f.Add(s)
	}
	f.Add([]byte("seq,time,kind,subject,actor,prev_hash,hash,data\n\"unterminated\n# ica-manifest {}\n"))
	f.Add([]byte("seq,time,kind,subject,actor,prev_hash,hash,data\n1,x,\"a\"\"b\",,,,,\n# ica-manifest {\"seqs\":\"1-18446744073709551615\"}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := Verify(bytes.NewReader(b))
		require.NotNil(t, rep)
		require.Equal(t, err == nil, rep.OK)
		if !rep.OK {
			require.NotEmpty(t, rep.Problem)
		}
	})
}

// FuzzVerifyJSON does the same for JSON Lines.
func FuzzVerifyJSON(f *testing.F) {
	for _, s := range fuzzSeeds(f, FormatJSON) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := Verify(bytes.NewReader(b))
		require.NotNil(t, rep)
		require.Equal(t, err == nil, rep.OK)
	})
}

// FuzzPDFLiteral checks the PDF string decoder on arbitrary input.
func FuzzPDFLiteral(f *testing.F) {
	f.Add([]byte(`ica-manifest {"a":"\(x\)"}) >>`))
	f.Add([]byte(`\101\12\1 (nested (deep)) \` + "\r\n" + `x)`))
	f.Fuzz(func(t *testing.T, b []byte) {
		pdfLiteral(b)
		pdfManifest(append([]byte("/Keywords ("), b...))
	})
}

// benchEntries returns n realistic entries to re-number in benchmarks.
func benchEntries(tb testing.TB, runs int) []*ica.LedgerEntry {
	return sample(tb, runs).entries
}

// benchHead is a checkpoint far ahead of any benchmark seq.
func benchHead() ica.Checkpoint {
	return ica.SignCheckpoint(testKey, 1<<62, ica.GenesisHash, t0)
}

func benchEncode(b *testing.B, format string) {
	pool := benchEntries(b, 200)
	enc, err := NewEncoder(io.Discard, testOptions(format, benchHead()))
	require.NoError(b, err)
	var e ica.LedgerEntry
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e = *pool[i%len(pool)]
		e.Seq = uint64(i) + 1
		if err := enc.Encode(&e); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := enc.Close(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkCSVEncode is the cost of one CSV record.
func BenchmarkCSVEncode(b *testing.B) { benchEncode(b, FormatCSV) }

// BenchmarkJSONEncode is the cost of one JSON Lines record.
func BenchmarkJSONEncode(b *testing.B) { benchEncode(b, FormatJSON) }

// BenchmarkPDF10kRuns is the cost of a PDF report of 10,000 runs (about
// 55,000 entries with their events and approvals); it also reports the
// cost per entry.
func BenchmarkPDF10kRuns(b *testing.B) {
	c := sample(b, 10000)
	head := c.head()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		enc, err := NewPDFEncoder(io.Discard, testOptions(FormatPDF, head))
		require.NoError(b, err)
		for _, e := range c.entries {
			if err := enc.Encode(e); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := enc.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(c.entries)), "ns/entry")
	b.ReportMetric(float64(len(c.entries)), "entries")
}

// BenchmarkVerifyCSV is the cost of verifying one CSV record.
func BenchmarkVerifyCSV(b *testing.B) {
	c := sample(b, b.N/5+1)
	data, _ := mustExport(b, FormatCSV, c.entries, c.head())
	b.ReportAllocs()
	b.ResetTimer()
	rep, err := Verify(bytes.NewReader(data))
	require.NoError(b, err, rep)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(len(c.entries)), "ns/record")
}

// TestCSV_Million exports 1,000,000 entries and checks the time and memory
// target (docs/design.md "Performance targets": < 15 s, < 150 MB). Set ICA_EXPORT_1M=1 to run it.
func TestCSV_Million(t *testing.T) {
	if os.Getenv("ICA_EXPORT_1M") == "" {
		t.Skip("set ICA_EXPORT_1M=1 to run the 1,000,000-entry export")
	}
	pool := benchEntries(t, 200)
	f, err := os.Create(t.TempDir() + "/big.csv")
	require.NoError(t, err)
	defer f.Close()
	runtime.GC()
	start := time.Now()
	enc, err := NewCSVEncoder(f, testOptions(FormatCSV, benchHead()))
	require.NoError(t, err)
	var e ica.LedgerEntry
	var peak uint64
	var ms runtime.MemStats
	for i := 0; i < 1_000_000; i++ {
		e = *pool[i%len(pool)]
		e.Seq = uint64(i) + 1
		require.NoError(t, enc.Encode(&e))
		if i%100_000 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}
	m, err := enc.Close()
	require.NoError(t, err)
	elapsed := time.Since(start)
	st, _ := f.Stat()
	t.Logf("1,000,000 entries: %s, %d MB file, peak heap in use %d MB, seqs %q", elapsed, st.Size()>>20, peak>>20, m.Seqs)
	require.Less(t, elapsed, 15*time.Second)
	require.Less(t, peak, uint64(150<<20))
}
