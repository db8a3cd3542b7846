package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	mp4 "github.com/abema/go-mp4"
)

// mp4Track is what the moov says about one trak, plus what the fragments add.
type mp4Track struct {
	Track
	defaults    trackDefaults
	sttsTicks   uint64 // sum of stts sample durations
	mdhdTicks   uint64
	fragTicks   uint64 // sum of trun sample durations
	fragBytes   uint64
	fragSamples uint64
	nextStart   uint64 // running decode time when a traf has no tfdt
	firstPTS    int64  // presentation time of the first fragment's first sample
	sawFrag     bool
	sttsSamples uint64
	hasStts     bool
	hasStsz     bool
	maxChunk    uint64 // largest stco/co64 chunk offset
}

// readFull reads len(b) bytes at off, turning a short read into ErrTruncated.
func readFull(r io.ReaderAt, b []byte, off int64, what string) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return truncated("%s at offset %d: wanted %d bytes, got %d", what, off, len(b), n)
	}
	return fmt.Errorf("reading %s at offset %d: %w", what, off, err)
}

// probeMP4 walks the top-level boxes (reading 16 bytes at each), reads and
// parses the moov and each moof, and never touches an mdat's payload.
func probeMP4(r io.ReaderAt, size int64) (*Info, error) {
	info := &Info{Size: size, Header: []Range{}, Tracks: []Track{}}
	var (
		hdr        [16]byte
		moov       *Range
		firstMedia int64 = -1 // first mdat or fragment box
		tracks     []*mp4Track
		defs       []trackDefaults
		primary    *mp4Track
		mvhdScale  uint32
		mvhdTicks  uint64
		mehdTicks  uint64
		fragmented bool
		qt         bool
		cur        *Fragment // fragment being assembled
		curMoof    bool      // cur has its moof
		moofBuf    []byte
		trafs      []trafSummary
		sawMdat    bool
		mdatBytes  int64 // sum of mdat payloads
	)
	closeFragment := func() {
		if cur != nil {
			info.FragmentList = append(info.FragmentList, *cur)
			cur = nil
		}
	}
	off := int64(0)
	for n := 0; off < size; n++ {
		if n >= maxTopLevelBoxes {
			return nil, fmt.Errorf("%w: more than %d top-level boxes", ErrTooLarge, maxTopLevelBoxes)
		}
		h := hdr[:min(16, size-off)]
		if len(h) < 8 {
			return nil, truncated("mp4: %d stray bytes at offset %d, too few for a box header", len(h), off)
		}
		if err := readFull(r, h, off, "box header"); err != nil {
			return nil, err
		}
		typ, bsize, hlen, ok := boxHeader(h)
		if !ok {
			return nil, truncated("mp4: box %q at offset %d: 64-bit size cut off", fourCC(binary.BigEndian.Uint32(h[4:])), off)
		}
		if n == 0 && !isTopLevelType(typ) {
			return nil, fmt.Errorf("%w: first box type %q", ErrUnknownFormat, fourCC(typ))
		}
		switch {
		case bsize == 0:
			bsize = uint64(size - off)
		case bsize < uint64(hlen):
			return nil, malformed("mp4: box %q at offset %d: size %d is smaller than its %d-byte header", fourCC(typ), off, bsize, hlen)
		case bsize > uint64(size-off):
			return nil, truncated("mp4: box %q at offset %d claims %d bytes but the file ends at %d", fourCC(typ), off, bsize, size)
		}
		box := Range{Offset: off, Length: int64(bsize)}
		payloadLen := box.Length - int64(hlen)

		if (typ == boxMdat || isFragmentStart(typ)) && firstMedia < 0 {
			firstMedia = off
		}
		switch typ {
		case boxFtyp:
			if info.Brand == "" {
				b := make([]byte, min(payloadLen, 1024))
				if err := readFull(r, b, off+int64(hlen), "ftyp"); err != nil {
					return nil, err
				}
				if len(b) >= 4 {
					info.Brand = string(bytes.TrimRight(b[:4], " \x00"))
				}
				for i := 8; i+4 <= len(b); i += 4 {
					if string(b[i:i+4]) == "qt  " {
						qt = true
					}
				}
				if string(b[:min(4, len(b))]) == "qt  " {
					qt = true
				}
			}
		case boxMoov:
			if moov != nil {
				return nil, malformed("mp4: a second moov box at offset %d (the first is at %d)", off, moov.Offset)
			}
			if payloadLen > MaxMoovSize {
				return nil, fmt.Errorf("%w: moov box at offset %d has %d bytes, more than the %d-byte limit", ErrTooLarge, off, payloadLen, MaxMoovSize)
			}
			moov = &box
			b := make([]byte, payloadLen)
			if err := readFull(r, b, off+int64(hlen), "moov"); err != nil {
				return nil, err
			}
			mv, err := parseMoov(b, qt)
			if err != nil {
				return nil, fmt.Errorf("mp4: moov at offset %d: %w", off, err)
			}
			tracks, mvhdScale, mvhdTicks, mehdTicks, fragmented = mv.tracks, mv.timescale, mv.duration, mv.mehd, mv.mvex
			for _, t := range tracks {
				defs = append(defs, t.defaults)
				if primary == nil || (t.Type == "video" && primary.Type != "video") {
					primary = t
				}
			}
		case boxMdat:
			sawMdat = true
			mdatBytes += payloadLen
		}

		// Fragments: from a fragment-start box through everything up to
		// the next one (normally moof+mdat).
		if isFragmentStart(typ) && (cur == nil || curMoof) {
			closeFragment()
			cur, curMoof = &Fragment{Range: Range{Offset: off}}, false
		}
		if typ == boxMfra {
			closeFragment()
		}
		if cur != nil && typ != boxMfra {
			cur.Length = box.End() - cur.Offset
		}
		if typ == boxMoof {
			if moov == nil {
				return nil, malformed("mp4: moof at offset %d comes before the moov", off)
			}
			fragmented, curMoof = true, true
			if payloadLen > MaxFragmentSize {
				return nil, fmt.Errorf("%w: moof at offset %d has %d bytes, more than the %d-byte limit", ErrTooLarge, off, payloadLen, MaxFragmentSize)
			}
			if int64(cap(moofBuf)) < payloadLen {
				moofBuf = make([]byte, payloadLen)
			}
			b := moofBuf[:payloadLen]
			if err := readFull(r, b, off+int64(hlen), "moof"); err != nil {
				return nil, err
			}
			var err error
			if trafs, err = parseMoof(b, defs, trafs[:0]); err != nil {
				return nil, fmt.Errorf("mp4: moof at offset %d: %w", off, err)
			}
			for i := range trafs {
				tr := &trafs[i]
				t := findTrack(tracks, tr.trackID)
				if t == nil {
					return nil, malformed("mp4: moof at offset %d: traf for track %d, which the moov does not declare", off, tr.trackID)
				}
				start := t.nextStart
				if tr.hasBaseTime {
					start = tr.baseTime
				}
				t.nextStart = start + tr.duration
				if !t.sawFrag {
					t.sawFrag = true
					t.firstPTS = int64(start) + tr.firstCTS
				}
				t.fragTicks += tr.duration
				t.fragBytes += tr.bytes
				t.fragSamples += tr.samples
				if t == primary {
					ts := t.defaults.timescale
					cur.Start = ticks(start, ts)
					cur.Duration = ticks(tr.duration, ts)
					cur.Keyframe = tr.keyframe() || t.Type != "video"
				}
			}
		}
		off = box.End()
	}
	closeFragment()

	if moov == nil {
		return nil, malformed("mp4: no moov box (the file may be cut short before it)")
	}
	if firstMedia < 0 || (!sawMdat && len(info.FragmentList) == 0) {
		return nil, malformed("mp4: no media data (no mdat or moof box)")
	}
	if firstMedia > 0 {
		info.Header = append(info.Header, Range{Offset: 0, Length: firstMedia})
	}
	info.FastStart = moov.Offset < firstMedia
	if !info.FastStart {
		info.Header = append(info.Header, *moov)
	}
	info.Moov = moov

	// A corrupt moov often still parses: check that it agrees with itself
	// and with the file.
	var sampleBytes uint64
	for _, t := range tracks {
		if t.hasStts && t.hasStsz && t.sttsSamples != uint64(t.Samples) {
			return nil, malformed("mp4: track %d: stts counts %d samples, stsz %d", t.ID, t.sttsSamples, t.Samples)
		}
		if t.maxChunk >= uint64(size) {
			return nil, malformed("mp4: track %d: a chunk offset (%d) is past the end of the file (%d)", t.ID, t.maxChunk, size)
		}
		sampleBytes += uint64(t.Bytes) + t.fragBytes
	}
	if sampleBytes > uint64(mdatBytes) {
		return nil, malformed("mp4: the tracks' samples add up to %d bytes, the mdat boxes hold %d", sampleBytes, mdatBytes)
	}

	video := false
	var longest time.Duration
	// fMP4 (no edit list applies): like ffprobe, from the earliest
	// presentation start of a track to the latest end.
	fragStart, fragEnd, fragKnown := math.Inf(1), math.Inf(-1), false
	for _, t := range tracks {
		if t.sawFrag {
			ts := float64(t.defaults.timescale)
			start := float64(t.firstPTS) / ts
			fragStart = min(fragStart, start)
			fragEnd = max(fragEnd, start+float64(t.sttsTicks+t.fragTicks)/ts)
			fragKnown = true
		}
	}
	for _, t := range tracks {
		ts := t.defaults.timescale
		total := t.sttsTicks + t.fragTicks
		t.Bytes += int64(t.fragBytes)
		t.Samples += int64(t.fragSamples)
		if total > 0 {
			t.BitrateBPS = float64(t.Bytes) * 8 * float64(ts) / float64(total)
		}
		if t.mdhdTicks > 0 {
			t.DurationS = float64(t.mdhdTicks) / float64(ts)
		} else {
			t.DurationS = float64(total) / float64(ts)
		}
		longest = max(longest, ticks(total, ts))
		if t.Type == "video" {
			video = true
		}
		info.Tracks = append(info.Tracks, t.Track)
	}
	info.AudioOnly = !video && len(tracks) > 0
	for _, t := range tracks {
		if t.Type != "audio" {
			info.AudioOnly = false
		}
	}

	switch {
	case fragmented:
		info.Kind = KindFMP4
		info.Fragments = len(info.FragmentList)
		info.DurationS = longest.Seconds()
		if fragKnown && fragEnd > fragStart {
			info.DurationS = fragEnd - fragStart
		}
		if info.DurationS == 0 && mvhdScale > 0 {
			info.DurationS = float64(max(mehdTicks, mvhdTicks)) / float64(mvhdScale)
		}
	default:
		info.Kind = KindMP4
		if info.AudioOnly {
			info.Kind = KindM4A
		}
		info.FragmentList = nil
		info.DurationS = float64(mvhdTicks) / float64(mvhdScale)
		if mvhdTicks == 0 {
			info.DurationS = longest.Seconds()
		}
	}
	if info.DurationS > 0 {
		info.BitrateBPS = float64(size) * 8 / info.DurationS
	}
	return info, nil
}

func findTrack(tracks []*mp4Track, id uint32) *mp4Track {
	for _, t := range tracks {
		if t.ID == id {
			return t
		}
	}
	return nil
}

type moovSummary struct {
	tracks    []*mp4Track
	timescale uint32
	duration  uint64
	mehd      uint64
	mvex      bool
}

// parseMoov parses the moov payload held in memory. go-mp4 decodes the
// fixed-layout boxes; the sample tables are summed here without
// materialising an entry per sample.
func parseMoov(b []byte, qt bool) (*moovSummary, error) {
	ctx := mp4.Context{IsQuickTimeCompatible: qt}
	m := &moovSummary{}
	sawMvhd := false
	var trex []mp4.Trex
	err := childBoxes(b, func(typ uint32, p []byte) error {
		switch typ {
		case boxMvhd:
			var mvhd mp4.Mvhd
			if _, err := unmarshalBox(p, &mvhd, ctx); err != nil {
				return err
			}
			sawMvhd = true
			m.timescale = mvhd.Timescale
			m.duration = uint64(mvhd.DurationV0)
			if mvhd.GetVersion() == 1 {
				m.duration = mvhd.DurationV1
			}
		case boxTrak:
			t, err := parseTrak(p, ctx)
			if err != nil {
				return err
			}
			if findTrack(m.tracks, t.ID) != nil {
				return malformed("two tracks with ID %d", t.ID)
			}
			m.tracks = append(m.tracks, t)
		case boxMvex:
			m.mvex = true
			return childBoxes(p, func(typ uint32, p []byte) error {
				switch typ {
				case boxMehd:
					var mehd mp4.Mehd
					if _, err := unmarshalBox(p, &mehd, ctx); err != nil {
						return err
					}
					m.mehd = mehd.GetFragmentDuration()
				case boxTrex:
					var t mp4.Trex
					if _, err := unmarshalBox(p, &t, ctx); err != nil {
						return err
					}
					trex = append(trex, t)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !sawMvhd {
		return nil, malformed("moov has no mvhd")
	}
	if m.timescale == 0 {
		return nil, malformed("mvhd timescale is 0")
	}
	if len(m.tracks) == 0 {
		return nil, malformed("moov has no tracks")
	}
	for _, t := range trex {
		if tr := findTrack(m.tracks, t.TrackID); tr != nil {
			tr.defaults.duration = t.DefaultSampleDuration
			tr.defaults.size = t.DefaultSampleSize
			tr.defaults.flags = t.DefaultSampleFlags
			tr.defaults.hasTrex = true
		}
	}
	return m, nil
}

func parseTrak(b []byte, ctx mp4.Context) (*mp4Track, error) {
	t := &mp4Track{}
	sawTkhd, sawMdhd := false, false
	var tkW, tkH uint32
	err := childBoxes(b, func(typ uint32, p []byte) error {
		switch typ {
		case boxTkhd:
			var tkhd mp4.Tkhd
			if _, err := unmarshalBox(p, &tkhd, ctx); err != nil {
				return err
			}
			sawTkhd = true
			t.ID = tkhd.TrackID
			tkW, tkH = tkhd.Width, tkhd.Height
		case boxMdia:
			return childBoxes(p, func(typ uint32, p []byte) error {
				switch typ {
				case boxMdhd:
					var mdhd mp4.Mdhd
					if _, err := unmarshalBox(p, &mdhd, ctx); err != nil {
						return err
					}
					sawMdhd = true
					t.defaults.timescale = mdhd.Timescale
					t.mdhdTicks = uint64(mdhd.DurationV0)
					if mdhd.GetVersion() == 1 {
						t.mdhdTicks = mdhd.DurationV1
					}
				case boxHdlr:
					var hdlr mp4.Hdlr
					if _, err := unmarshalBox(p, &hdlr, ctx); err != nil {
						return err
					}
					t.Handler = string(hdlr.HandlerType[:])
				case boxMinf:
					return childBoxes(p, func(typ uint32, p []byte) error {
						if typ != boxStbl {
							return nil
						}
						return parseStbl(p, t, ctx)
					})
				}
				return nil
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !sawTkhd {
		return nil, malformed("trak without tkhd")
	}
	if !sawMdhd || t.defaults.timescale == 0 {
		return nil, malformed("track %d: no mdhd or a timescale of 0", t.ID)
	}
	t.defaults.id = t.ID
	t.Timescale = t.defaults.timescale
	switch t.Handler {
	case "vide":
		t.Type = "video"
	case "soun":
		t.Type = "audio"
	case "subt", "text", "sbtl", "clcp":
		t.Type = "subtitle"
	default:
		t.Type = "other"
	}
	t.defaults.video = t.Type == "video"
	if t.Type == "video" && t.Width == 0 {
		t.Width, t.Height = int(tkW>>16), int(tkH>>16)
	}
	if t.Codec == "" {
		t.Codec = "unknown"
	}
	return t, nil
}

func parseStbl(b []byte, t *mp4Track, ctx mp4.Context) error {
	return childBoxes(b, func(typ uint32, p []byte) error {
		switch typ {
		case boxStsd:
			return parseStsd(p, t, ctx)
		case boxStts:
			_, _, rest, ok := fullBox(p)
			if !ok || len(rest) < 4 {
				return malformed("stts too short")
			}
			n := uint64(binary.BigEndian.Uint32(rest))
			rest = rest[4:]
			if n > uint64(len(rest)/8) {
				return malformed("stts declares %d entries, has room for %d", n, len(rest)/8)
			}
			var sum uint64
			var samples uint64
			for i := uint64(0); i < n; i++ {
				c := uint64(binary.BigEndian.Uint32(rest[8*i:]))
				d := uint64(binary.BigEndian.Uint32(rest[8*i+4:]))
				sum += c * d // < 2^64 per entry; the sum is checked below
				samples += c
				if sum < c*d {
					return malformed("stts durations overflow")
				}
			}
			t.sttsTicks, t.sttsSamples, t.hasStts = sum, samples, true
		case boxStsz:
			_, _, rest, ok := fullBox(p)
			if !ok || len(rest) < 8 {
				return malformed("stsz too short")
			}
			fixed := uint64(binary.BigEndian.Uint32(rest))
			n := uint64(binary.BigEndian.Uint32(rest[4:]))
			rest = rest[8:]
			t.Samples, t.hasStsz = int64(n), true
			if fixed != 0 {
				t.Bytes = int64(fixed * n)
				return nil
			}
			if n > uint64(len(rest)/4) {
				return malformed("stsz declares %d entries, has room for %d", n, len(rest)/4)
			}
			var sum uint64
			for i := uint64(0); i < n; i++ {
				sum += uint64(binary.BigEndian.Uint32(rest[4*i:]))
			}
			t.Bytes = int64(sum)
		case boxStz2:
			_, _, rest, ok := fullBox(p)
			if !ok || len(rest) < 8 {
				return malformed("stz2 too short")
			}
			field := int(rest[3])
			n := uint64(binary.BigEndian.Uint32(rest[4:]))
			rest = rest[8:]
			if field != 4 && field != 8 && field != 16 {
				return malformed("stz2 field size %d", field)
			}
			if n > uint64(len(rest))*8/uint64(field) {
				return malformed("stz2 declares %d entries, has room for fewer", n)
			}
			var sum uint64
			for i := uint64(0); i < n; i++ {
				switch field {
				case 4:
					v := rest[i/2]
					if i%2 == 0 {
						v >>= 4
					}
					sum += uint64(v & 0xf)
				case 8:
					sum += uint64(rest[i])
				case 16:
					sum += uint64(binary.BigEndian.Uint16(rest[2*i:]))
				}
			}
			t.Samples, t.Bytes, t.hasStsz = int64(n), int64(sum), true
		case boxStco, boxCo64:
			_, _, rest, ok := fullBox(p)
			if !ok || len(rest) < 4 {
				return malformed("%s too short", fourCC(typ))
			}
			n := uint64(binary.BigEndian.Uint32(rest))
			rest = rest[4:]
			w := uint64(4)
			if typ == boxCo64 {
				w = 8
			}
			if n > uint64(len(rest))/w {
				return malformed("%s declares %d entries, has room for %d", fourCC(typ), n, uint64(len(rest))/w)
			}
			for i := uint64(0); i < n; i++ {
				var v uint64
				if w == 4 {
					v = uint64(binary.BigEndian.Uint32(rest[4*i:]))
				} else {
					v = binary.BigEndian.Uint64(rest[8*i:])
				}
				t.maxChunk = max(t.maxChunk, v)
			}
		}
		return nil
	})
}

// parseStsd describes the first sample entry: codec, dimensions or audio
// parameters, and the declared bitrates of btrt or esds.
func parseStsd(p []byte, t *mp4Track, ctx mp4.Context) error {
	_, _, rest, ok := fullBox(p)
	if !ok || len(rest) < 4 {
		return malformed("stsd too short")
	}
	rest = rest[4:]
	if len(rest) < 8 {
		return nil // no sample entry
	}
	typ, size, hdr, ok := boxHeader(rest)
	if !ok || size < uint64(hdr) || size > uint64(len(rest)) {
		return malformed("stsd: sample entry %q has a bad size", fourCC(typ))
	}
	entry := rest[hdr:size]
	t.Codec = fourCC(typ)
	bt := mp4.BoxType{byte(typ >> 24), byte(typ >> 16), byte(typ >> 8), byte(typ)}
	var children []byte
	switch bt {
	case mp4.BoxTypeAvc1(), mp4.StrToBoxType("avc3"), mp4.BoxTypeHvc1(), mp4.BoxTypeHev1(),
		mp4.BoxTypeEncv(), mp4.BoxTypeMp4v(), mp4.BoxTypeAv01(), mp4.StrToBoxType("vp09"), mp4.StrToBoxType("vp08"):
		vse := mp4.VisualSampleEntry{SampleEntry: mp4.SampleEntry{AnyTypeBox: mp4.AnyTypeBox{Type: mp4.BoxTypeAvc1()}}}
		n, err := unmarshalBox(entry, &vse, ctx)
		if err != nil {
			return err
		}
		t.Width, t.Height = int(vse.Width), int(vse.Height)
		children = entry[n:]
	case mp4.BoxTypeMp4a(), mp4.BoxTypeEnca(), mp4.BoxTypeAC3(), mp4.BoxTypeEC3(), mp4.BoxTypeOpus(),
		mp4.BoxTypeFLaC(), mp4.StrToBoxType(".mp3"), mp4.StrToBoxType("alac"):
		ase := mp4.AudioSampleEntry{SampleEntry: mp4.SampleEntry{AnyTypeBox: mp4.AnyTypeBox{Type: mp4.BoxTypeMp4a()}}}
		n, err := unmarshalBox(entry, &ase, ctx)
		if err != nil {
			return err
		}
		t.Channels = int(ase.ChannelCount)
		t.SampleRate = int(ase.SampleRate >> 16)
		children = entry[n:]
	default:
		return nil
	}
	return childBoxes(children, func(typ uint32, p []byte) error {
		return parseSampleEntryChild(typ, p, t, ctx)
	})
}

func parseSampleEntryChild(typ uint32, p []byte, t *mp4Track, ctx mp4.Context) error {
	switch typ {
	case boxAvcC:
		avcc := mp4.AVCDecoderConfiguration{AnyTypeBox: mp4.AnyTypeBox{Type: mp4.BoxTypeAvcC()}}
		if _, err := unmarshalBox(p, &avcc, ctx); err != nil {
			// A broken avcC does not stop us knowing the rate.
			return nil
		}
		t.Codec = fmt.Sprintf("%s.%02x%02x%02x", t.Codec, avcc.Profile, avcc.ProfileCompatibility, avcc.Level)
	case boxBtrt:
		var btrt mp4.Btrt
		if _, err := unmarshalBox(p, &btrt, ctx); err != nil {
			return err
		}
		t.DeclaredBPS, t.DeclaredPeak = float64(btrt.AvgBitrate), float64(btrt.MaxBitrate)
	case boxWave: // QuickTime puts esds in a wave box
		return childBoxes(p, func(typ uint32, p []byte) error {
			if typ == boxEsds {
				return parseSampleEntryChild(typ, p, t, ctx)
			}
			return nil
		})
	case boxEsds:
		var esds mp4.Esds
		if _, err := unmarshalBox(p, &esds, ctx); err != nil {
			return nil // as for avcC
		}
		oti := byte(0)
		for _, d := range esds.Descriptors {
			switch {
			case d.Tag == mp4.DecoderConfigDescrTag && d.DecoderConfigDescriptor != nil:
				dc := d.DecoderConfigDescriptor
				oti = dc.ObjectTypeIndication
				if t.DeclaredBPS == 0 {
					t.DeclaredBPS, t.DeclaredPeak = float64(dc.AvgBitrate), float64(dc.MaxBitrate)
				}
			case d.Tag == mp4.DecSpecificInfoTag && oti == 0x40 && len(d.Data) >= 1:
				aot := int(d.Data[0] >> 3)
				if aot == 31 && len(d.Data) >= 2 {
					aot = 32 + int(d.Data[0]&7)<<3 | int(d.Data[1]>>5)
				}
				t.Codec = fmt.Sprintf("mp4a.40.%d", aot)
			}
		}
		if oti != 0 && t.Codec == "mp4a" {
			t.Codec = fmt.Sprintf("mp4a.%02X", oti)
		}
	}
	return nil
}

// unmarshalBox decodes one box payload held in memory with go-mp4, turning
// its errors and any panic into ErrMalformed. It returns the bytes consumed.
func unmarshalBox(p []byte, dst mp4.IBox, ctx mp4.Context) (n uint64, err error) {
	name := dst.GetType().String()
	defer func() {
		if v := recover(); v != nil {
			n, err = 0, malformed("%s: %v", name, v)
		}
	}()
	n, err = mp4.Unmarshal(bytes.NewReader(p), uint64(len(p)), dst, ctx)
	if err != nil {
		return 0, malformed("%s: %v", name, err)
	}
	return n, nil
}
