package media

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/tcolgate/mp3"
)

// MPEG audio frame headers. Bits of the 32-bit header, high to low:
// 11 sync, 2 version (0 = MPEG-2.5, 1 reserved, 2 = MPEG-2, 3 = MPEG-1),
// 2 layer (1 = III, 2 = II, 3 = I), 1 no-CRC, 4 bitrate index, 2 sample rate
// index, 1 padding, 1 private, 2 channel mode, 2 mode extension, 1
// copyright, 1 original, 2 emphasis.

var mpegBitrates = [4][4][16]int{ // [version][layer][index], kbit/s
	0: {1: {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},
		2: {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},
		3: {0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256}},
	2: {1: {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},
		2: {0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160},
		3: {0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256}},
	3: {1: {0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320},
		2: {0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384},
		3: {0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448}},
}

var mpegSampleRates = [4][3]int{
	0: {11025, 12000, 8000},
	2: {22050, 24000, 16000},
	3: {44100, 48000, 32000},
}

// frameHeader is a decoded MPEG audio frame header.
type frameHeader struct {
	raw        uint32
	size       int // whole frame, header included
	samples    int // per channel
	sampleRate int
	bitrate    int // bit/s
	version    int // header bits: 0 = 2.5, 2 = 2, 3 = 1
	layer      int // header bits: 1 = III, 2 = II, 3 = I
	mono       bool
}

// mp3LockMask selects the header bits that stay the same in every frame of
// one stream: sync, version, layer, CRC flag and sample rate.
const mp3LockMask = 0xfffe0c00

// frameSizes is indexed by header bits 20..9 (version, layer, CRC flag,
// bitrate, sample rate, padding): the frame size, 0 if invalid. It
// is the splitter's fast path; parseFrameHeader is the reference.
var frameSizes [4096]uint16

func init() {
	for key := range frameSizes {
		h := uint32(0xffe00000) | uint32(key)<<9
		if fh, ok := parseFrameHeader(h); ok {
			frameSizes[key] = uint16(fh.size)
		}
	}
}

// frameSizeFast is parseFrameHeader(h).size, or 0, by table lookup.
func frameSizeFast(h uint32) int {
	if h&0xffe00000 != 0xffe00000 || h&3 == 2 {
		return 0
	}
	return int(frameSizes[(h>>9)&0xfff])
}

// parseFrameHeader decodes a 32-bit MPEG audio header. Free-format
// bitrates (index 0), reserved values and the reserved emphasis are
// rejected.
func parseFrameHeader(h uint32) (frameHeader, bool) {
	fh := frameHeader{raw: h}
	if h&0xffe00000 != 0xffe00000 {
		return fh, false
	}
	fh.version = int(h>>19) & 3
	fh.layer = int(h>>17) & 3
	bri := int(h>>12) & 0xf
	sri := int(h>>10) & 3
	pad := int(h>>9) & 1
	if fh.version == 1 || fh.layer == 0 || bri == 0 || bri == 15 || sri == 3 || h&3 == 2 {
		return fh, false
	}
	fh.bitrate = mpegBitrates[fh.version][fh.layer][bri] * 1000
	fh.sampleRate = mpegSampleRates[fh.version][sri]
	fh.mono = (h>>6)&3 == 3
	switch {
	case fh.layer == 3: // Layer I
		fh.samples = 384
		fh.size = (12*fh.bitrate/fh.sampleRate + pad) * 4
	case fh.layer == 2 || fh.version == 3: // Layer II, or Layer III MPEG-1
		fh.samples = 1152
		fh.size = 144*fh.bitrate/fh.sampleRate + pad
	default: // Layer III, MPEG-2 and 2.5
		fh.samples = 576
		fh.size = 72*fh.bitrate/fh.sampleRate + pad
	}
	return fh, fh.size >= 4
}

// sideInfoLen is the Layer III side information length, where a Xing or
// Info tag starts after the 4-byte header.
func (fh frameHeader) sideInfoLen() int {
	switch {
	case fh.version == 3 && fh.mono:
		return 17
	case fh.version == 3:
		return 32
	case fh.mono:
		return 9
	}
	return 17
}

func (fh frameHeader) codec() string {
	return [4]string{"", "mp3", "mp2", "mp1"}[fh.layer]
}

// vbrTag is a Xing/Info or VBRI header found in the first frame.
type vbrTag struct {
	name   string // "Xing", "Info", "VBRI"
	frames int64  // -1 when absent
	bytes  int64  // -1 when absent
}

// parseVBRTag looks for a Xing/Info tag after the side information or a
// VBRI tag 32 bytes after the header in frame (a whole first frame).
func parseVBRTag(fh frameHeader, frame []byte) (vbrTag, bool) {
	t := vbrTag{frames: -1, bytes: -1}
	if fh.layer != 1 {
		return t, false
	}
	if off := 4 + fh.sideInfoLen(); len(frame) >= off+8 {
		if s := string(frame[off : off+4]); s == "Xing" || s == "Info" {
			t.name = s
			flags := binary.BigEndian.Uint32(frame[off+4:])
			p := frame[off+8:]
			if flags&1 != 0 && len(p) >= 4 {
				t.frames = int64(binary.BigEndian.Uint32(p))
				p = p[4:]
			}
			if flags&2 != 0 && len(p) >= 4 {
				t.bytes = int64(binary.BigEndian.Uint32(p))
			}
			return t, true
		}
	}
	if len(frame) >= 36+18 && string(frame[36:40]) == "VBRI" {
		t.name = "VBRI"
		t.bytes = int64(binary.BigEndian.Uint32(frame[46:]))
		t.frames = int64(binary.BigEndian.Uint32(frame[50:]))
		return t, true
	}
	return t, false
}

// probeMP3 reads the leading ID3v2 tags, the trailing tags, then every
// frame header from the first to the last (a sequential read of the file).
func probeMP3(r io.ReaderAt, size int64) (*Info, error) {
	info := &Info{Kind: KindMP3, Size: size, Header: []Range{}, AudioOnly: true}
	start := int64(0)
	var b [10]byte
	for range 16 {
		if size-start < 10 {
			break
		}
		if err := readFull(r, b[:], start, "ID3v2 header"); err != nil {
			return nil, err
		}
		if string(b[:3]) != "ID3" {
			break
		}
		t, ok := parseID3v2(b[:], "ID3")
		if !ok {
			return nil, malformed("mp3: invalid ID3v2 header at offset %d", start)
		}
		if start+t.total() > size {
			return nil, truncated("mp3: ID3v2 tag at offset %d claims %d bytes but the file ends at %d", start, t.total(), size)
		}
		start += t.total()
	}
	if start > 0 {
		info.ID3v2 = &Range{Offset: 0, Length: start}
	}
	end, id3v1, err := trailingTags(r, start, size)
	if err != nil {
		return nil, err
	}
	info.ID3v1 = id3v1
	if end < size {
		info.TrailingTags = &Range{Offset: end, Length: size - end}
	}

	br := bufio.NewReaderSize(io.NewSectionReader(r, start, end-start), 64<<10)
	pos := start
	// Zero padding after a tag (some taggers leave it undeclared).
	for pos < end {
		c, err := br.ReadByte()
		if err != nil {
			return nil, mp3ReadErr(err, pos, end)
		}
		if c != 0 {
			br.UnreadByte()
			break
		}
		pos++
	}
	if start > 0 {
		info.Header = append(info.Header, Range{Offset: 0, Length: pos})
	}

	noFrame := func() error {
		if start == 0 {
			return fmt.Errorf("%w: no ISO BMFF box or MPEG audio frame at offset 0", ErrUnknownFormat)
		}
		return malformed("mp3: no MPEG audio frame after the ID3v2 tags, at offset %d", pos)
	}
	p, err := br.Peek(4)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, noFrame()
		}
		return nil, err
	}
	first, ok := parseFrameHeader(binary.BigEndian.Uint32(p))
	if !ok {
		return nil, noFrame()
	}
	// Check the frame against tcolgate/mp3's reading of the same header:
	// two independent decodings must agree before we call this MPEG audio.
	th := mp3.FrameHeader(p)
	if int(th.SampleRate()) != first.sampleRate || int(th.BitRate()) != first.bitrate {
		return nil, noFrame()
	}
	info.Tracks = []Track{{ID: 1, Type: "audio", Codec: first.codec(), SampleRate: first.sampleRate, Channels: 2}}
	if th.ChannelMode() == mp3.SingleChannel {
		info.Tracks[0].Channels = 1
	}
	lock := first.raw & mp3LockMask
	// A lone sync word is common in other data: ask for a second frame
	// right after the first (unless the first ends the file).
	if pos+int64(first.size) < end {
		nb, err := br.Peek(min(first.size+4, int(end-pos)))
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		if len(nb) == first.size+4 {
			h := binary.BigEndian.Uint32(nb[first.size:])
			if h&mp3LockMask != lock || frameSizeFast(h) == 0 {
				if start == 0 {
					return nil, noFrame()
				}
				return nil, malformed("mp3: the frame at offset %d is not followed by another (the next 4 bytes are %08x)", pos, h)
			}
		}
	}
	var tag vbrTag
	if fb, _ := br.Peek(min(first.size, int(end-pos))); len(fb) == first.size {
		var ok bool
		if tag, ok = parseVBRTag(first, fb); ok {
			info.VBRHeader, info.VBRHeaderOffset = tag.name, pos
			if _, err := br.Discard(first.size); err != nil {
				return nil, mp3ReadErr(err, pos, end)
			}
			pos += int64(first.size)
		}
	}
	info.FirstFrameOffset = pos
	streamStart := pos // where the MPEG stream starts, header frame included
	if info.VBRHeader != "" {
		streamStart = info.VBRHeaderOffset
	}

	var samples, audioBytes int64
	firstRate := -1
	for pos < end {
		p, err := br.Peek(4)
		if len(p) < 4 {
			if err == nil || errors.Is(err, io.EOF) {
				return nil, truncated("mp3: %d bytes at offset %d, too few for a frame header (the file ends at %d)", len(p), pos, end)
			}
			return nil, err
		}
		h := binary.BigEndian.Uint32(p)
		n := frameSizeFast(h)
		if n == 0 || h&mp3LockMask != lock {
			return nil, malformed("mp3: lost frame sync at offset %d (bytes %08x are not a frame header matching the first)", pos, h)
		}
		if pos+int64(n) > end {
			return nil, truncated("mp3: the frame at offset %d needs %d bytes but the audio ends at %d", pos, n, end)
		}
		rate := int(h>>12) & 0xf
		if firstRate < 0 {
			firstRate = rate
		} else if rate != firstRate {
			info.VBR = true
		}
		if _, err := br.Discard(n); err != nil {
			return nil, mp3ReadErr(err, pos, end)
		}
		pos += int64(n)
		info.Frames++
		samples += int64(first.samples)
		audioBytes += int64(n)
	}
	if info.Frames == 0 {
		return nil, malformed("mp3: no audio frames after the %s header", info.VBRHeader)
	}
	// Xing counts the audio frames; some writers count the header frame too.
	if info.VBRHeader != "" && tag.frames > info.Frames+1 {
		return nil, truncated("mp3: the %s header says %d frames, the file has %d", tag.name, tag.frames, info.Frames)
	}
	info.AudioEnd = pos
	info.DurationS = float64(samples) / float64(first.sampleRate)
	if info.VBR {
		info.BitrateBPS = float64(pos-streamStart) * 8 / info.DurationS
	} else {
		fh, _ := parseFrameHeader(lock | uint32(firstRate)<<12)
		info.BitrateBPS = float64(fh.bitrate)
	}
	tr := &info.Tracks[0]
	tr.BitrateBPS, tr.DurationS = info.BitrateBPS, info.DurationS
	tr.Samples, tr.Bytes = info.Frames, audioBytes
	return info, nil
}

func mp3ReadErr(err error, pos, end int64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return truncated("mp3: the data ends at offset %d, before %d", pos, end)
	}
	return err
}
