package e2e

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testCA is a self-signed certificate for 127.0.0.1 that may also sign
// others, written as PEM files.
type testCA struct {
	cert              *x509.Certificate
	key               *ecdsa.PrivateKey
	certPath, keyPath string
}

func newTestCA(t *testing.T, dir string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "castmesh e2e"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	ca := testCA{cert: cert, key: key, certPath: filepath.Join(dir, "api.pem"), keyPath: filepath.Join(dir, "api.key")}
	os.WriteFile(ca.certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(ca.keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return ca
}

// client returns a client certificate signed by the CA.
func (ca testCA) client(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "viewer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// With tls_cert and tls_key the API proxy is HTTPS: clients and peers use
// it that way (peers pull through it), plain HTTP is not answered, and
// listconfig works against it.
func TestProcessesAPIOverTLS(t *testing.T) {
	requireTool(t, "curl")
	ca := newTestCA(t, t.TempDir())
	certPath, keyPath := ca.certPath, ca.keyPath
	t.Setenv("SSL_CERT_FILE", certPath) // the nodes and listconfig trust it
	pc := startCluster(t, 3)
	for _, p := range pc.procs {
		p.stop()
		b, err := os.ReadFile(p.config)
		if err != nil {
			t.Fatal(err)
		}
		cfg := strings.Replace(string(b), "[api]\n", "[api]\ntls_cert = \""+certPath+"\"\ntls_key = \""+keyPath+"\"\n", 1)
		os.WriteFile(p.config, []byte(cfg), 0o644)
	}
	for _, p := range pc.procs {
		p.start()
	}
	pc.waitHealthy(15 * time.Second)

	n2 := pc.procs[1]
	api := strings.Replace(n2.apiURL(), "http://", "https://", 1)
	src := newSource(t, 64<<10)
	params := base64.StdEncoding.EncodeToString([]byte("uri=" + src.URL + "/t.mp4 localStreamName=vod/t.mp4"))
	req, _ := http.NewRequest(http.MethodGet, api+"/pullStream?params="+params, nil)
	req.SetBasicAuth("admin", password)
	resp, err := http.DefaultClient.Do(req) // trusts SSL_CERT_FILE too
	if err != nil {
		t.Fatal(err)
	}
	var env envelope
	json.NewDecoder(resp.Body).Decode(&env)
	resp.Body.Close()
	if env.Status != "SUCCESS" {
		t.Fatalf("pullStream over https: %d %s %s", resp.StatusCode, env.Status, env.Description)
	}
	for _, p := range pc.procs {
		waitEdge(t, p, "vod/t.mp4", src.sum, 5*time.Second, pc)
	}

	// Plain HTTP to the TLS port gets no API answer.
	if resp, err := http.Get(n2.apiURL() + "/version"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("plain HTTP on the TLS API port answered %d", resp.StatusCode)
		}
	}

	cmd := exec.Command(filepath.Join(binDir, "listconfig"), "--api", strings.Replace(pc.procs[2].apiURL(), "http://", "https://", 1), "--user", "admin")
	cmd.Env = append(os.Environ(), "CASTMESH_PASSWORD="+password)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.Count(string(out), "active") != 3 {
		t.Fatalf("listconfig over https: %v\n%s", err, out)
	}
}

// edge.tls_port serves viewers over HTTPS; with client_ca only viewers
// with a certificate signed by it get an answer.
func TestProcessesEdgeOverTLSWithClientCA(t *testing.T) {
	requireTool(t, "curl")
	dir := t.TempDir()
	ca := newTestCA(t, dir)
	tlsPort := freePort(t)
	p := &proc{t: t, name: "n1", host: "127.0.0.1", dir: filepath.Join(dir, "n1"), gossip: freePort(t), api: freePort(t), edge: freePort(t),
		extraConfig: fmt.Sprintf("tls_port = %d\ntls_cert = %q\ntls_key = %q\nclient_ca = %q\n", tlsPort, ca.certPath, ca.keyPath, ca.certPath)}
	pc := launch(t, []*proc{p}, func() int { return freePort(t) })
	src := newSource(t, 32<<10)
	pullStream(t, p, src.URL+"/s.mp4", "s.mp4")
	waitEdge(t, p, "s.mp4", src.sum, 5*time.Second, pc)

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	get := func(certs []tls.Certificate) (*http.Response, []byte, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
		resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/s.mp4", tlsPort))
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	resp, body, err := get([]tls.Certificate{ca.client(t)})
	if err != nil || resp.StatusCode != 200 || sha256.Sum256(body) != src.sum {
		t.Fatalf("viewer with a client certificate: %v %v", resp, err)
	}
	if _, _, err := get(nil); err == nil {
		t.Fatal("a viewer without a client certificate was served over HTTPS")
	}
}

// SIGHUP with a broken file keeps the running config and says what is
// wrong, with file, line and key; the node keeps serving.
func TestProcessesBadReloadKeepsRunning(t *testing.T) {
	requireTool(t, "curl")
	pc := startCluster(t, 1)
	p := pc.procs[0]
	src := newSource(t, 16<<10)
	pullStream(t, p, src.URL+"/r.mp3", "r.mp3")
	waitEdge(t, p, "r.mp3", src.sum, 5*time.Second, pc)

	good, err := os.ReadFile(p.config)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(good), "[edge]\n", "[edge]\nport_number = 80\n", 1)
	os.WriteFile(p.config, []byte(bad), 0o644)
	p.cmd.Process.Signal(syscall.SIGHUP)
	line := strings.Count(bad[:strings.Index(bad, "port_number")], "\n") + 1
	// The error names the file, the line and the key, in one place.
	want := fmt.Sprintf("node.toml:%d: edge.port_number: unknown key", line)
	waitFor(t, 5*time.Second, "the reload error in the log", func() bool {
		log := p.logTail()
		return strings.Contains(log, "reload failed; keeping the running config") && strings.Contains(log, want)
	}, pc.logs)
	for _, l := range strings.Split(p.logTail(), "\n") {
		if strings.Contains(l, "reload failed") {
			t.Log(l)
		}
	}
	pc.waitHealthy(5 * time.Second)
	waitEdge(t, p, "r.mp3", src.sum, 2*time.Second, pc)

	// A good file again reloads.
	os.WriteFile(p.config, good, 0o644)
	p.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 5*time.Second, "config reloaded", func() bool { return strings.Contains(p.logTail(), "config reloaded") }, pc.logs)
}
