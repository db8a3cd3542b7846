package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// PasswordFile is the name, under node.data_dir, of the file that keeps the
// API password generated at first start.
const PasswordFile = "api-password"

// EnsureAPIPassword makes sure the API has a password unless authentication
// is explicitly "none". With an empty api.password it uses the one kept in
// <data_dir>/api-password, or makes a random one (24 URL-safe characters),
// keeps it there (data_dir mode 0700, file mode 0600) and returns
// generated=true so that the caller prints it once. Calling it again, in
// this process or the next, finds the same password.
func EnsureAPIPassword(c *Config) (generated bool, err error) {
	if c.API.Authentication == "none" || c.API.Password != "" {
		return false, nil
	}
	if c.Node.DataDir == "" {
		return false, errors.New("config: cannot keep a generated API password: node.data_dir is empty")
	}
	path := filepath.Join(c.Node.DataDir, PasswordFile)
	if pw, err := readPassword(path); err == nil {
		c.API.Password = pw
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}

	if err := os.MkdirAll(c.Node.DataDir, 0o700); err != nil {
		return false, fmt.Errorf("config: keeping the API password: %w", err)
	}
	buf := make([]byte, 18) // 24 characters of base64
	if _, err := rand.Read(buf); err != nil {
		return false, fmt.Errorf("config: generating the API password: %w", err)
	}
	pw := base64.RawURLEncoding.EncodeToString(buf)

	// Write a temporary file, then link it into place: the password file is
	// never seen half-written, and of two processes starting at once only
	// one creates it; the other reads it.
	tmp, err := os.CreateTemp(c.Node.DataDir, PasswordFile+".*")
	if err != nil {
		return false, fmt.Errorf("config: keeping the API password: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, fmt.Errorf("config: keeping the API password: %w", err)
	}
	if _, err := tmp.WriteString(pw + "\n"); err != nil {
		tmp.Close()
		return false, fmt.Errorf("config: keeping the API password: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return false, fmt.Errorf("config: keeping the API password: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("config: keeping the API password: %w", err)
	}
	err = os.Link(tmp.Name(), path)
	if err != nil && !errors.Is(err, fs.ErrExist) {
		// A file system without hard links: create the file directly.
		err = writeExclusive(path, pw)
	}
	if errors.Is(err, fs.ErrExist) {
		kept, rerr := readPassword(path)
		if rerr != nil {
			return false, rerr
		}
		c.API.Password = kept
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("config: keeping the API password: %w", err)
	}
	c.API.Password = pw
	return true, nil
}

// writeExclusive creates path with mode 0600 and writes pw to it; it fails
// with fs.ErrExist when path exists.
func writeExclusive(path, pw string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(pw + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// readPassword reads a kept password; an empty file is an error (a password
// is never empty).
func readPassword(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("config: reading the API password: %w", err)
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		return "", fmt.Errorf("config: %s is empty: delete it to generate a new API password, or set api.password", path)
	}
	return pw, nil
}
