// Package edge serves viewers: GET and HEAD of /<localStreamName> from this
// node's copy, with Range, conditional requests and the right content type,
// and the health endpoint a load balancer checks.
package edge
