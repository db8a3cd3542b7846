// Package apiproxy is the authenticated HTTP API of a node, in the shape of
// EvoStream EMS's API proxy: /<pseudo_domain>/<command> with EMS arguments
// (base64 "params" or plain fields) and EMS's JSON envelope, so existing
// EMS clients and scripts keep working. Peers use the same API, through
// Client, to forward Raft commands to the leader and to copy streams from
// their origin (GET /<pseudo_domain>/streams/<name>).
package apiproxy
