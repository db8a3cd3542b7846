package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEnsureAPIPassword(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	c := Default()
	c.Node.DataDir = dir

	generated, err := EnsureAPIPassword(&c)
	if err != nil || !generated {
		t.Fatalf("first call: generated %v, err %v; want a new password", generated, err)
	}
	pw := c.API.Password
	if len(pw) != 24 || strings.Trim(pw, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Errorf("password %q is not 24 URL-safe characters", pw)
	}
	path := filepath.Join(dir, PasswordFile)
	for p, mode := range map[string]os.FileMode{dir: 0o700 | os.ModeDir, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s has mode %v, want %v", p, fi.Mode(), mode)
		}
	}
	if b, _ := os.ReadFile(path); strings.TrimSpace(string(b)) != pw {
		t.Errorf("%s holds %q, want %q", path, b, pw)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("data_dir holds %d files, want only %s", len(entries), PasswordFile)
	}

	// Again (a restart): the same password, not generated.
	c2 := Default()
	c2.Node.DataDir = dir
	generated, err = EnsureAPIPassword(&c2)
	if err != nil || generated || c2.API.Password != pw {
		t.Errorf("second call: generated %v, password %q, err %v; want the kept %q", generated, c2.API.Password, err, pw)
	}
	// And on the same config: nothing to do.
	generated, err = EnsureAPIPassword(&c2)
	if err != nil || generated || c2.API.Password != pw {
		t.Errorf("third call: generated %v, password %q, err %v", generated, c2.API.Password, err)
	}
}

func TestEnsureAPIPasswordLeavesSetPassword(t *testing.T) {
	for _, tc := range []struct {
		name, auth, password string
	}{
		{"configured password", "basic", "given"},
		{"authentication none", "none", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			c.Node.DataDir = filepath.Join(t.TempDir(), "data")
			c.API.Authentication, c.API.Password = tc.auth, tc.password
			generated, err := EnsureAPIPassword(&c)
			if err != nil || generated || c.API.Password != tc.password {
				t.Errorf("generated %v, password %q, err %v; want it left alone", generated, c.API.Password, err)
			}
			if _, err := os.Stat(c.Node.DataDir); !os.IsNotExist(err) {
				t.Errorf("data_dir was created (%v)", err)
			}
		})
	}
}

func TestEnsureAPIPasswordEmptyFile(t *testing.T) {
	c := Default()
	c.Node.DataDir = t.TempDir()
	if err := os.WriteFile(filepath.Join(c.Node.DataDir, PasswordFile), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := EnsureAPIPassword(&c); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Errorf("EnsureAPIPassword with an empty password file = %v, want an error", err)
	}
	if c.API.Password != "" {
		t.Errorf("password = %q", c.API.Password)
	}
}
