package media

import (
	"errors"
	"fmt"
)

// Errors that callers branch on with errors.Is. Every error from Probe wraps
// exactly one of them and says where in the input the problem is.
var (
	// ErrUnknownFormat: the bytes are neither ISO BMFF (MP4/M4A) nor MPEG
	// audio. The name of the file plays no part.
	ErrUnknownFormat = errors.New("not an MP4, M4A or MP3 file")

	// ErrTruncated: the input ends before a box, tag or frame it declares
	// (a partial download or an interrupted write).
	ErrTruncated = errors.New("truncated")

	// ErrMalformed: a structure is invalid (a size smaller than its header,
	// a missing mandatory box, lost frame sync in a file, ...).
	ErrMalformed = errors.New("malformed")

	// ErrTooLarge: a structure that must be held in memory (moov, moof, an
	// fMP4 fragment in the splitter) is larger than the caps below.
	ErrTooLarge = errors.New("too large")
)

// Caps on what is ever held in memory. A size field above them is an error
// (files) or a resynchronisation (live), never an allocation.
const (
	// MaxMoovSize bounds the moov box Probe reads (a two-hour film's moov is
	// a few MB).
	MaxMoovSize = 128 << 20
	// MaxFragmentSize bounds one moof box in Probe, and one whole fragment
	// (moof+mdat and the boxes before them) or init segment in the Splitter.
	MaxFragmentSize = 64 << 20
	// maxTopLevelBoxes bounds the walk over a file's top-level boxes.
	maxTopLevelBoxes = 1 << 22
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

func truncated(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrTruncated}, args...)...)
}
