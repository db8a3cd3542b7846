package media

import "time"

// Kind is the container format of a file or stream, detected from its bytes.
type Kind string

// The kinds Probe reports. A Splitter accepts KindFMP4, KindMP3 or "" (detect).
const (
	KindMP4  Kind = "mp4"  // ISO BMFF with a video track, not fragmented
	KindM4A  Kind = "m4a"  // ISO BMFF with audio tracks only, not fragmented
	KindFMP4 Kind = "fmp4" // fragmented ISO BMFF (moov has mvex), audio or video
	KindMP3  Kind = "mp3"  // MPEG-1/2/2.5 audio, Layer I, II or III
)

// ContentType is the MIME type to serve a file of this kind with.
// audioOnly matters for KindFMP4 only.
func (k Kind) ContentType(audioOnly bool) string {
	switch k {
	case KindMP4:
		return "video/mp4"
	case KindM4A:
		return "audio/mp4"
	case KindFMP4:
		if audioOnly {
			return "audio/mp4"
		}
		return "video/mp4"
	case KindMP3:
		return "audio/mpeg"
	}
	return "application/octet-stream"
}

// Range is a byte range of a file: [Offset, Offset+Length).
type Range struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// End is the offset just past the range.
func (r Range) End() int64 { return r.Offset + r.Length }

// Info describes a media file. Fields marked "MP4" or "MP3" are zero for the
// other family.
type Info struct {
	Kind Kind  `json:"kind"`
	Size int64 `json:"size"` // bytes probed (the file size)

	// DurationS is the presentation length in seconds: mvhd duration for
	// MP4/M4A; for fMP4, from the earliest track start (first tfdt plus the
	// first sample's composition offset) to the latest track end (start plus
	// the sum of its trun sample durations), as ffprobe measures it; audio
	// frames × samples per frame ÷ sample rate for MP3.
	DurationS float64 `json:"duration_s"`

	// BitrateBPS is the average encoding rate in bit/s. MP4, M4A, fMP4: all
	// bits of the file ÷ DurationS (what a player must receive per second).
	// MP3: the frames' rate when every audio frame has the same bitrate
	// (CBR), else the MPEG stream's bytes (first frame to last, tags
	// excluded) × 8 ÷ DurationS.
	BitrateBPS float64 `json:"bitrate_bps"`

	// Header lists the byte ranges to send first and unthrottled, sorted and
	// disjoint; never nil (an empty list when there is no header).
	//
	//   - MP4/M4A, moov before the first mdat (fast-start): one range,
	//     [0, offset of the first mdat).
	//   - MP4/M4A, moov after the mdat: two ranges, [0, offset of the first
	//     mdat) (ftyp and whatever precedes the mdat) and the moov box
	//     exactly (its header included).
	//   - fMP4: the init segment, [0, offset of the first fragment box
	//     (moof, styp, sidx, prft, emsg) or mdat): ftyp+moov.
	//   - MP3: [0, offset of the first MPEG frame) when the file starts with
	//     ID3v2 tags (each with its footer, if flagged, and any zero padding
	//     after them); empty otherwise. A Xing/Info/VBRI frame is the first
	//     frame, not header.
	Header []Range `json:"header"`

	Tracks []Track `json:"tracks"`

	// Fragments is the number of fragments (fMP4 only); FragmentList has
	// each one. It is left out of the JSON because it grows with the file;
	// castmeshd probe -fragments prints it.
	Fragments    int        `json:"fragments"`
	FragmentList []Fragment `json:"-"`

	// Frames is the number of MPEG audio frames that carry audio (MP3 only;
	// a Xing/Info/VBRI header frame is not counted).
	Frames int64 `json:"frames"`

	// MP4.
	Brand     string `json:"brand,omitempty"`      // ftyp major brand
	FastStart bool   `json:"fast_start,omitempty"` // moov before the first mdat
	Moov      *Range `json:"moov,omitempty"`
	AudioOnly bool   `json:"audio_only,omitempty"` // no video track (MP3 too)

	// MP3.
	FirstFrameOffset int64  `json:"first_frame_offset,omitempty"` // first frame carrying audio
	VBR              bool   `json:"vbr,omitempty"`                // audio frames differ in bitrate
	VBRHeader        string `json:"vbr_header,omitempty"`         // "Xing", "Info", "VBRI" or ""
	VBRHeaderOffset  int64  `json:"vbr_header_offset,omitempty"`  // offset of that header's frame
	AudioEnd         int64  `json:"audio_end,omitempty"`          // end of the last frame
	ID3v2            *Range `json:"id3v2,omitempty"`              // leading ID3v2 tags, footer included
	ID3v1            bool   `json:"id3v1,omitempty"`              // 128-byte "TAG" at the end
	TrailingTags     *Range `json:"trailing_tags,omitempty"`      // ID3v1/APEv2/Lyrics3/appended ID3v2
}

// Track is one track of an MP4 (from its trak box) or the one audio stream
// of an MP3.
type Track struct {
	ID      uint32 `json:"id"`
	Type    string `json:"type"`              // "video", "audio", "subtitle", "other"
	Handler string `json:"handler,omitempty"` // hdlr handler_type, e.g. "vide", "soun"
	// Codec is an RFC 6381 string where the file says enough (avc1.64001e,
	// mp4a.40.2), else the sample entry type (hvc1, Opus) or mp1/mp2/mp3.
	Codec string `json:"codec"`
	// BitrateBPS is the sum of the sample sizes × 8 ÷ the sum of the sample
	// durations (what ffprobe reports per stream); 0 when unknown.
	BitrateBPS float64 `json:"bitrate_bps"`
	// DurationS is mdhd duration ÷ timescale, or the sum of the sample
	// durations when mdhd says 0 (fragmented files).
	DurationS float64 `json:"duration_s"`

	Timescale    uint32  `json:"timescale,omitempty"`
	Samples      int64   `json:"samples,omitempty"` // samples (MP4) or frames (MP3)
	Bytes        int64   `json:"bytes,omitempty"`   // sum of sample sizes
	Width        int     `json:"width,omitempty"`
	Height       int     `json:"height,omitempty"`
	SampleRate   int     `json:"sample_rate,omitempty"`
	Channels     int     `json:"channels,omitempty"`
	DeclaredBPS  float64 `json:"declared_bitrate_bps,omitempty"` // btrt/esds avgBitrate
	DeclaredPeak float64 `json:"declared_max_bitrate_bps,omitempty"`
}

// Fragment is one fMP4 fragment: the boxes from a styp/sidx/prft/emsg/moof
// that starts it through its mdat (and anything before the next fragment).
type Fragment struct {
	Range
	// Start and Duration are those of the primary track (the first video
	// track, else the first track): its tfdt and the sum of its trun sample
	// durations.
	Start    time.Duration `json:"start_ns"`
	Duration time.Duration `json:"duration_ns"`
	// Keyframe: the primary track's first sample is a sync sample.
	Keyframe bool `json:"keyframe"`
}

// HeaderEnd is the end of the leading header range, the one that starts at
// offset 0: where media data begins in a fast-start or fragmented MP4, where
// the first frame begins in an MP3 with ID3v2 tags. It is 0 when the header
// does not start at offset 0 (an MP3 without tags).
func (i *Info) HeaderEnd() int64 {
	if len(i.Header) == 0 || i.Header[0].Offset != 0 {
		return 0
	}
	return i.Header[0].End()
}

// HeaderBytes is the total length of the header ranges.
func (i *Info) HeaderBytes() int64 {
	var n int64
	for _, r := range i.Header {
		n += r.Length
	}
	return n
}

// HeaderBytesIn returns how many bytes of the request range [start, end)
// belong to the header ranges: the part of a response that is sent
// unthrottled. It is 0 for an empty or inverted range.
func (i *Info) HeaderBytesIn(start, end int64) int64 {
	var n int64
	for _, r := range i.Header {
		lo, hi := max(start, r.Offset), min(end, r.End())
		if hi > lo {
			n += hi - lo
		}
	}
	return n
}

// IsHeader reports whether the byte at off belongs to a header range.
func (i *Info) IsHeader(off int64) bool {
	return i.HeaderBytesIn(off, off+1) == 1
}

// ContentType is the MIME type to serve the file with.
func (i *Info) ContentType() string { return i.Kind.ContentType(i.AudioOnly) }

// Duration is DurationS as a time.Duration.
func (i *Info) Duration() time.Duration {
	return time.Duration(i.DurationS * float64(time.Second))
}
