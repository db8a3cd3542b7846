package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// defaultApplyTimeout bounds Apply and ApplyLocal when ctx has no deadline.
const defaultApplyTimeout = 10 * time.Second

// Apply commits cmd through raft and returns the FSM's answer. On the
// leader it applies the command itself; on a follower it hands it to the
// leader with Options.Forward. While there is no leader, or the leader
// just changed, it retries until ctx is done (10 s when ctx has no
// deadline). An FSM answer that is an error is returned as that error
// (errors.Is works on it), a []byte as is.
//
// A retry never repeats a command that may have been committed: only
// failures that prove it was not (not the leader, no leader, refused
// connection) are retried.
func (c *Cluster) Apply(ctx context.Context, cmd []byte) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultApplyTimeout)
		defer cancel()
	}
	var last error
	for {
		if c.closed.Load() {
			return nil, ErrClosed
		}
		var (
			resp []byte
			err  error
		)
		leader, ok := c.Leader()
		switch {
		case !ok:
			err = ErrNoLeader
		case leader.Name == c.name:
			resp, err = c.ApplyLocal(ctx, cmd)
		case leader.Meta.API == "" || c.opts.Forward == nil:
			// Gossip has not told us how to reach the leader yet.
			err = fmt.Errorf("%w: leader %s is not known to gossip yet", ErrNoLeader, leader.Name)
			if c.opts.Forward == nil {
				return nil, fmt.Errorf("%w (%s), and this node cannot forward: Options.Forward is nil", ErrNotLeader, leader.Name)
			}
		default:
			// The leader's answer, FSM errors included, is returned as is.
			resp, err = c.opts.Forward(ctx, leader, cmd)
		}
		if err == nil || !retryable(err) {
			return resp, err
		}
		last = err
		if !sleep(ctx, 20*time.Millisecond) {
			if errors.Is(last, ErrNoLeader) || errors.Is(last, ErrNotLeader) {
				return nil, fmt.Errorf("%w: %w", last, ctx.Err())
			}
			return nil, fmt.Errorf("%w: %w (last: %v)", ErrNoLeader, ctx.Err(), last)
		}
	}
}

// retryable reports whether err proves the command was not committed, so
// that trying again (perhaps on a new leader) is safe.
func retryable(err error) bool {
	if errors.Is(err, ErrNotLeader) || errors.Is(err, ErrNoLeader) ||
		errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipTransferInProgress) ||
		errors.Is(err, raft.ErrEnqueueTimeout) {
		return true
	}
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// ApplyLocal applies cmd on this node, which must be the leader
// (ErrNotLeader otherwise): the API proxy calls it for commands that
// followers forward.
func (c *Cluster) ApplyLocal(ctx context.Context, cmd []byte) ([]byte, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if c.raft.State() != raft.Leader {
		return nil, ErrNotLeader
	}
	timeout := defaultApplyTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return nil, ctx.Err()
	}
	start := time.Now()
	f := c.raft.Apply(cmd, timeout)
	done := make(chan struct{})
	go func() {
		// raft resolves every future, at the latest when it shuts down.
		f.Error()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("apply: outcome unknown: %w", ctx.Err())
	}
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			return nil, ErrNotLeader
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, ErrClosed
		}
		return nil, fmt.Errorf("apply: %w", err)
	}
	if c.metrics != nil {
		c.metrics.applyDuration.Observe(time.Since(start).Seconds())
	}
	switch r := f.Response().(type) {
	case nil:
		return nil, nil
	case []byte:
		return r, nil
	case error:
		return nil, r
	default:
		return nil, fmt.Errorf("apply: the FSM answered a %T; want []byte or error", r)
	}
}
