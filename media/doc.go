// Package media knows what is inside the media files and live streams the
// edge delivers: MP4 and M4A (fast-start, moov at the end, fragmented) and
// MPEG audio (MP3).
//
// Probe and ProbeFile describe a whole file: its kind, duration, average
// encoding rate, per-track rates, and the header byte ranges the edge sends
// first and unthrottled. They read box and frame headers only: probing an MP4
// never reads its mdat, and no size field read from the input ever drives an
// allocation larger than the input itself (and never beyond the caps below).
//
// Splitter cuts a live byte stream of fragmented MP4 or MP3, fed in chunks of
// any size, into its header (the fMP4 init segment; nothing for MP3) and
// whole units (moof+mdat fragments; groups of MP3 frames) at which a new
// viewer may join, each with its duration.
//
// Malformed input is an error wrapping one of the sentinels below (files) or
// a resynchronisation counted in SplitterStats (live streams): never a panic
// and never an endless loop. DESIGN.md beside this file says why it is built
// this way.
package media
