// Package edge serves viewers: GET and HEAD of /<localStreamName> from this
// node's copy (with Range, conditional requests and the right content
// type) or from a live stream's relay, and the health endpoint a load
// balancer checks. It delivers in the terms of STON's bandwidth chapter,
// with the policy and the pacing from package shaping:
//
//   - The vhost is chosen by the Host header: an exact name, then the
//     longest "*.example.com", then "*", then the vhost named "default".
//   - Per request, shaping.Decide takes the vhost's settings, its
//     throttling.txt and, when query_string is on, the override parameters
//     (which are then removed from the query), the client's address (the
//     socket peer; a trusted proxy's X-Forwarded-For or PROXY protocol
//     header) and the file's own encoding rate from media.Probe (probed once
//     per copy).
//   - A file response sends the media header ranges unthrottled (for a
//     moov-at-the-end MP4 a range covering the moov is header too), then
//     the boost, then the rest paced by a shaping.Session, under the
//     session cap, the vhost's cap (a shaping.Group) and the node's cap.
//     http.ServeContent does the HTTP; its body copy lands in the
//     delivery's ReadFrom, which sends every chunk by sendfile.
//   - A live viewer gets the boost's seconds as a burst of the relay's
//     recent data, then the stream as it comes, under the caps.
//   - A viewer that takes nothing for the write timeout (20 s) is dropped.
//   - Per vhost: bytes sent, active and throttled sessions, sessions
//     dropped (Prometheus).
//
// LoadConfig reads the vhosts and their rules files (a bad file is an
// error naming file:line:col); Server.Apply switches to a new one in place.
// Server.ProxyListener reads PROXY protocol headers from trusted peers. See
// DESIGN.md beside this file for why it is built this way.
package edge
