// Package e2e runs the real castmeshd and listconfig binaries as separate
// processes and talks to them with real clients (curl, ffprobe), killing
// and restarting them as an operator's bad day would.
package e2e
