package export

import (
	"io"
	"time"
	"unicode/utf8"

	"github.com/go-pdf/fpdf"
)

// canvas is the little the PDF report needs from a PDF library: pages,
// fonts, colours, text in boxes, lines and rectangles. Coordinates are in
// millimetres from the top-left corner. Keeping the report behind it means
// the library can be swapped without touching the layout code.
type canvas interface {
	AddPage()
	PageSize() (w, h float64)
	PageNo() int
	// TotalPages is a placeholder replaced by the page count on output.
	TotalPages() string
	// SetFont selects "sans" or "mono", style "" / "B" / "I", size in points.
	SetFont(family, style string, size float64)
	SetTextColor(r, g, b int)
	SetFillColor(r, g, b int)
	SetDrawColor(r, g, b int)
	SetLineWidth(w float64)
	// Cell draws s in the box (x, y, w, h), vertically centred; align is
	// "L", "C" or "R"; fill paints the box first.
	Cell(x, y, w, h float64, s, align string, fill bool)
	// Rect draws a rectangle: style "D" (outline), "F" (fill) or "FD".
	Rect(x, y, w, h float64, style string)
	Line(x1, y1, x2, y2 float64)
	StringWidth(s string) float64
	SetMetadata(m pdfMetadata)
	Output(w io.Writer) error
}

// pdfMetadata is the document information dictionary.
type pdfMetadata struct {
	Title, Subject, Author, Creator, Keywords string
	Created                                   time.Time
}

// fpdfCanvas implements canvas with github.com/go-pdf/fpdf.
type fpdfCanvas struct {
	f  *fpdf.Fpdf
	tr func(string) string
}

var _ canvas = (*fpdfCanvas)(nil)

func newFpdfCanvas() *fpdfCanvas {
	f := fpdf.New("L", "mm", "A4", "")
	f.SetMargins(0, 0, 0)
	f.SetAutoPageBreak(false, 0)
	f.AliasNbPages("{nb}")
	f.SetCompression(true)
	f.SetCatalogSort(true)
	// Core fonts speak Windows-1252; characters beyond it print as '?'.
	return &fpdfCanvas{f: f, tr: f.UnicodeTranslatorFromDescriptor("")}
}

func (c *fpdfCanvas) text(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return c.tr(s)
		}
	}
	return s
}

func (c *fpdfCanvas) AddPage()                     { c.f.AddPage() }
func (c *fpdfCanvas) PageSize() (float64, float64) { return c.f.GetPageSize() }
func (c *fpdfCanvas) PageNo() int                  { return c.f.PageNo() }
func (c *fpdfCanvas) TotalPages() string           { return "{nb}" }
func (c *fpdfCanvas) SetTextColor(r, g, b int)     { c.f.SetTextColor(r, g, b) }
func (c *fpdfCanvas) SetFillColor(r, g, b int)     { c.f.SetFillColor(r, g, b) }
func (c *fpdfCanvas) SetDrawColor(r, g, b int)     { c.f.SetDrawColor(r, g, b) }
func (c *fpdfCanvas) SetLineWidth(w float64)       { c.f.SetLineWidth(w) }
func (c *fpdfCanvas) Line(x1, y1, x2, y2 float64)  { c.f.Line(x1, y1, x2, y2) }
func (c *fpdfCanvas) Rect(x, y, w, h float64, style string) {
	c.f.Rect(x, y, w, h, style)
}

func (c *fpdfCanvas) SetFont(family, style string, size float64) {
	name := "Helvetica"
	if family == "mono" {
		name = "Courier"
	}
	c.f.SetFont(name, style, size)
}

func (c *fpdfCanvas) Cell(x, y, w, h float64, s, align string, fill bool) {
	c.f.SetXY(x, y)
	c.f.CellFormat(w, h, c.text(s), "", 0, align+"M", fill, 0, "")
}

func (c *fpdfCanvas) StringWidth(s string) float64 { return c.f.GetStringWidth(c.text(s)) }

func (c *fpdfCanvas) SetMetadata(m pdfMetadata) {
	c.f.SetTitle(m.Title, true)
	c.f.SetSubject(m.Subject, true)
	c.f.SetAuthor(m.Author, true)
	c.f.SetCreator(m.Creator, true)
	// Keywords carry the manifest for Verify: written as plain bytes (the
	// caller passes ASCII) so it reads back without UTF-16 decoding.
	c.f.SetKeywords(m.Keywords, false)
	c.f.SetCreationDate(m.Created)
	c.f.SetModificationDate(m.Created)
}

func (c *fpdfCanvas) Output(w io.Writer) error { return c.f.Output(w) }
