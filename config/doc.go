// Package config owns castmesh's one typed Config: read from a TOML or INI
// file, defaulted, validated, with errors that name the file, line and key.
//
// Load is the way in: Default() → the file (.toml or .ini, the same keys in
// both; see DESIGN.md "Config" and testdata/configs/node.toml) → the
// CASTMESH_API_PASSWORD environment variable → derived defaults (node name,
// advertise address) → Validate. A file is read strictly: an unknown key or
// table, a value of the wrong type, or a repeated key is an error, never
// silently ignored. Every error is a *Error:
//
//	node.toml:14: edge.vhosts.www.ratio: expected a number, got string "abc"
//	node.ini:7: api.ews_prot: unknown key (did you mean ews_port?)
//
// Entries of arrays of tables are named by their number from 1 in both
// formats (stream_load_balancer.destination_ems_apiproxies.2.address), as
// the INI form writes them.
//
// EnsureAPIPassword gives the API a kept random password when none is
// configured, so that a node never runs its API without authentication
// unless the file says authentication = "none" on a loopback address.
//
// Config carries no behaviour of other packages; each consumer reads the
// fields it needs. Cluster.Timings is set only by code (tests shorten raft
// and gossip timings through it); it has no key in the file.
package config
