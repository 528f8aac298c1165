package natsx_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/switchyard/switchyard/pkg/natsx"
	"github.com/switchyard/switchyard/pkg/testing/natstest"
)

// syncBuffer is a log destination several goroutines (the server's) write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The embedded server with its generated password: a TCP client or an
// in-process one without the password (or with another) is refused; with
// the file's password it connects; the file is 0600 and the same password
// is found again on the next start; the password is in no log line.
func TestEmbeddedNATSRequiresItsPassword(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	pwFile := filepath.Join(dataDir, "nats-password")
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	start := func() (*server.Server, string) {
		t.Helper()
		pw, err := natsx.LoadOrCreatePassword(pwFile)
		if err != nil {
			t.Fatalf("LoadOrCreatePassword: %v", err)
		}
		ns, err := natsx.StartEmbedded(natsx.EmbeddedConfig{
			StoreDir: filepath.Join(dataDir, "nats"), Listen: "127.0.0.1:0", Logger: log, Password: pw,
		})
		if err != nil {
			t.Fatalf("StartEmbedded: %v", err)
		}
		t.Cleanup(func() {
			ns.Shutdown()
			ns.WaitForShutdown()
		})
		return ns, pw
	}
	ns, pw := start()
	if fi, err := os.Stat(pwFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v, mode %v; want mode 0600", err, fi.Mode().Perm())
	}

	for name, opts := range map[string][]nats.Option{
		"anonymous":      nil,
		"wrong password": {nats.UserInfo(natsx.EmbeddedUser, "guess")},
		"other user":     {nats.UserInfo("admin", pw)},
	} {
		nc, err := nats.Connect(ns.ClientURL(), opts...)
		if err == nil {
			nc.Close()
			t.Errorf("%s: a TCP client connected to the embedded server", name)
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Errorf("%s: error %v, want an authorization violation", name, err)
		}
	}
	// A refused in-process connection ends when the server's write
	// deadline (10 s) passes: look at the answer before the restart.
	inProcess := make(chan error, 1)
	go func() {
		nc, err := natsx.ConnectEmbedded(ns, natsx.ConnectOptions{Logger: log})
		if err == nil {
			nc.Close()
		}
		inProcess <- err
	}()

	auth := natsx.Auth{User: natsx.EmbeddedUser, Password: pw}
	nc, err := natsx.Connect(testContext(t), ns.ClientURL(), natsx.ConnectOptions{Logger: log, Auth: auth})
	if err != nil {
		t.Fatalf("Connect with the file's password: %v", err)
	}
	nc.Close()
	nc, err = natsx.ConnectEmbedded(ns, natsx.ConnectOptions{Logger: log, Auth: auth})
	if err != nil {
		t.Fatalf("ConnectEmbedded with the file's password: %v", err)
	}
	nc.Close()

	if err := <-inProcess; err == nil {
		t.Error("an in-process client without the password connected")
	}
	ns.Shutdown()
	ns.WaitForShutdown()
	ns2, pw2 := start()
	if pw2 != pw {
		t.Fatal("the password changed on restart")
	}
	nc, err = natsx.Connect(testContext(t), ns2.ClientURL(), natsx.ConnectOptions{Logger: log, Auth: auth})
	if err != nil {
		t.Fatalf("Connect after a restart: %v", err)
	}
	nc.Close()
	if strings.Contains(logs.String(), pw) {
		t.Error("the log shows the password")
	}
}

func TestPasswordFileReadableByOthersIsRefused(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nats-password")
	if err := os.WriteFile(path, []byte("s3cret-value\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := natsx.LoadOrCreatePassword(path)
	if !errors.Is(err, natsx.ErrPasswordFileMode) {
		t.Fatalf("error = %v, want ErrPasswordFileMode", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error shows the password: %v", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if pw, err := natsx.ReadPassword(path); err != nil || pw != "s3cret-value" {
		t.Errorf("ReadPassword = %q, %v", pw, err)
	}
}

func TestEmbeddedNonLoopbackListenNeedsAPassword(t *testing.T) {
	t.Parallel()
	for _, listen := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		ns, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: t.TempDir(), Listen: listen, Logger: natstest.Logger(t)})
		if err == nil {
			ns.Shutdown()
			t.Errorf("StartEmbedded(%s) without a password succeeded", listen)
		} else if !errors.Is(err, natsx.ErrListenNeedsAuth) {
			t.Errorf("StartEmbedded(%s): %v, want ErrListenNeedsAuth", listen, err)
		}
	}
	ns, err := natsx.StartEmbedded(natsx.EmbeddedConfig{StoreDir: t.TempDir(), Listen: "0.0.0.0:0", Logger: natstest.Logger(t), Password: "pw-for-all-interfaces"})
	if err != nil {
		t.Fatalf("StartEmbedded on 0.0.0.0 with a password: %v", err)
	}
	ns.Shutdown()
	ns.WaitForShutdown()
}

// startServer runs a JetStream server on a random loopback port with the
// test's options (authentication, TLS).
func startServer(t *testing.T, set func(*server.Options)) *server.Server {
	t.Helper()
	opts := &server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, NoLog: true,
		JetStream: true, StoreDir: t.TempDir(), JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 64 << 20,
	}
	set(opts)
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("start NATS: %v", err)
	}
	ns.Start()
	t.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS not ready")
	}
	return ns
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// operatorMode configures a server in operator (JWT) mode with one
// JetStream-enabled account, and returns a .creds file of a user of it.
func operatorMode(t *testing.T) (func(*server.Options), string, string) {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	okp, err := nkeys.CreateOperator()
	must(err)
	opub, err := okp.PublicKey()
	must(err)
	oc := jwt.NewOperatorClaims(opub)
	ojwt, err := oc.Encode(okp)
	must(err)
	oc, err = jwt.DecodeOperatorClaims(ojwt)
	must(err)

	account := func(name string, js bool) (nkeys.KeyPair, string, string) {
		akp, err := nkeys.CreateAccount()
		must(err)
		apub, err := akp.PublicKey()
		must(err)
		ac := jwt.NewAccountClaims(apub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		ajwt, err := ac.Encode(okp)
		must(err)
		return akp, apub, ajwt
	}
	_, sysPub, sysJWT := account("SYS", false)
	akp, apub, ajwt := account("APP", true)

	user := func() string {
		ukp, err := nkeys.CreateUser()
		must(err)
		upub, err := ukp.PublicKey()
		must(err)
		useed, err := ukp.Seed()
		must(err)
		ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
		must(err)
		creds, err := jwt.FormatUserConfig(ujwt, useed)
		must(err)
		return string(creds)
	}
	creds := user()
	// A user of an account the server does not know: refused.
	strangerCreds := func() string {
		skp, _, _ := account("STRANGER", true)
		ukp, err := nkeys.CreateUser()
		must(err)
		upub, err := ukp.PublicKey()
		must(err)
		useed, err := ukp.Seed()
		must(err)
		ujwt, err := jwt.NewUserClaims(upub).Encode(skp)
		must(err)
		c, err := jwt.FormatUserConfig(ujwt, useed)
		must(err)
		return string(c)
	}()
	set := func(o *server.Options) {
		o.TrustedOperators = []*jwt.OperatorClaims{oc}
		o.SystemAccount = sysPub
		r := &server.MemAccResolver{}
		must(r.Store(sysPub, sysJWT))
		must(r.Store(apub, ajwt))
		o.AccountResolver = r
	}
	return set, creds, strangerCreds
}

// Every way of authenticating to an external server, against a real
// nats-server requiring it: without the credential the connection is
// refused, with a wrong one too, with the right one natsx.Connect succeeds
// (JetStream reachable), and no error shows a secret.
func TestConnectWithEachAuthMethod(t *testing.T) {
	t.Parallel()
	ukp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	otherKP, _ := nkeys.CreateUser()
	otherSeed, _ := otherKP.Seed()
	opMode, creds, strangerCreds := operatorMode(t)

	for _, tc := range []struct {
		name    string
		server  func(*server.Options)
		good    natsx.Auth
		bad     natsx.Auth
		secrets []string
	}{
		{
			name:    "user and password",
			server:  func(o *server.Options) { o.Username, o.Password = "svc", "pa55-word-value" },
			good:    natsx.Auth{User: "svc", Password: "pa55-word-value"},
			bad:     natsx.Auth{User: "svc", Password: "wrong-pa55-value"},
			secrets: []string{"pa55-word-value", "wrong-pa55-value"},
		},
		{
			name:    "token",
			server:  func(o *server.Options) { o.Authorization = "t0ken-value-abc" },
			good:    natsx.Auth{Token: "t0ken-value-abc"},
			bad:     natsx.Auth{Token: "wrong-t0ken-value"},
			secrets: []string{"t0ken-value-abc", "wrong-t0ken-value"},
		},
		{
			name:    "nkey",
			server:  func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: upub}} },
			good:    natsx.Auth{NKeySeedFile: writeFile(t, "user.nk", string(useed))},
			bad:     natsx.Auth{NKeySeedFile: writeFile(t, "other.nk", string(otherSeed))},
			secrets: []string{string(useed), string(otherSeed)},
		},
		{
			name:    "creds file (operator mode)",
			server:  opMode,
			good:    natsx.Auth{CredentialsFile: writeFile(t, "user.creds", creds)},
			bad:     natsx.Auth{CredentialsFile: writeFile(t, "stranger.creds", strangerCreds)},
			secrets: []string{seedOf(t, creds), seedOf(t, strangerCreds)},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := startServer(t, tc.server)
			var logs syncBuffer
			log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			o := natsx.ConnectOptions{Name: t.Name(), Logger: log}

			var errs []error
			if _, err := natsx.Connect(testContext(t), ns.ClientURL(), o); err == nil {
				t.Error("connected without a credential")
			} else {
				errs = append(errs, err)
			}
			o.Auth = tc.bad
			if _, err := natsx.Connect(testContext(t), ns.ClientURL(), o); err == nil {
				t.Error("connected with a wrong credential")
			} else {
				errs = append(errs, err)
			}
			o.Auth = tc.good
			nc, err := natsx.Connect(testContext(t), ns.ClientURL(), o)
			if err != nil {
				t.Fatalf("Connect with the credential: %v", err)
			}
			nc.Close()
			for _, err := range errs {
				if !errors.Is(err, nats.ErrAuthorization) || !strings.Contains(err.Error(), "refused the credential") {
					t.Errorf("error %q, want an authorization violation that says so", err)
				}
				for _, s := range tc.secrets {
					if strings.Contains(err.Error(), s) {
						t.Errorf("error %q shows a secret", err)
					}
				}
			}
			for _, s := range tc.secrets {
				if strings.Contains(logs.String(), s) {
					t.Error("the log shows a secret")
				}
			}
		})
	}
}

// seedOf is the nkey seed inside a .creds file.
func seedOf(t *testing.T, creds string) string {
	t.Helper()
	kp, err := jwt.ParseDecoratedNKey([]byte(creds))
	if err != nil {
		t.Fatal(err)
	}
	seed, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	return string(seed)
}

func TestAuthOptionsErrors(t *testing.T) {
	t.Parallel()
	for name, a := range map[string]natsx.Auth{
		"user without password": {User: "svc"},
		"password without user": {Password: "pw-alone-value"},
		"two methods":           {User: "svc", Password: "pw-two-methods", Token: "tok-two-methods"},
		"missing seed file":     {NKeySeedFile: filepath.Join(t.TempDir(), "none.nk")},
		"bad seed file":         {NKeySeedFile: writeFile(t, "bad.nk", "not-a-seed-value")},
		"missing creds file":    {CredentialsFile: filepath.Join(t.TempDir(), "none.creds")},
		"cert without key":      {TLS: natsx.TLS{CertFile: "client.pem"}},
	} {
		_, err := natsx.Connect(testContext(t), "nats://127.0.0.1:1", natsx.ConnectOptions{Logger: natstest.Logger(t), Auth: a})
		if err == nil {
			t.Errorf("%s: Connect succeeded", name)
			continue
		}
		for _, s := range []string{"pw-alone-value", "pw-two-methods", "tok-two-methods", "not-a-seed-value"} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s: error %q shows a secret", name, err)
			}
		}
	}
}

// testPKI is a CA and a server certificate for 127.0.0.1 it signed, and a
// client certificate, written as PEM files.
type testPKI struct {
	caFile, serverCert, serverKey, clientCert, clientKey string
	pool                                                 *x509.CertPool
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		must(os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		return path
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "switchyard test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	ca, err := x509.ParseCertificate(caDER)
	must(err)
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage) (string, string) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		must(err)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		must(err)
		kder, err := x509.MarshalECPrivateKey(key)
		must(err)
		return write(cn+".pem", "CERTIFICATE", der), write(cn+"-key.pem", "EC PRIVATE KEY", kder)
	}
	p := testPKI{caFile: write("ca.pem", "CERTIFICATE", caDER), pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.serverCert, p.serverKey = leaf(2, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = leaf(3, "client", x509.ExtKeyUsageClientAuth)
	return p
}

// TLS with the test CA against a real server that requires TLS and a
// client certificate: without the CA the server's certificate is not
// trusted, without the client certificate the server refuses, with both
// (and a password over the encrypted connection) natsx.Connect succeeds.
func TestConnectWithTLS(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	cert, err := tls.LoadX509KeyPair(pki.serverCert, pki.serverKey)
	if err != nil {
		t.Fatal(err)
	}
	ns := startServer(t, func(o *server.Options) {
		o.TLS, o.TLSVerify = true, true
		o.TLSConfig = &tls.Config{
			Certificates: []tls.Certificate{cert}, ClientCAs: pki.pool,
			ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12,
		}
		o.Username, o.Password = "svc", "tls-pa55-value"
	})
	url := ns.ClientURL()
	creds := natsx.Auth{User: "svc", Password: "tls-pa55-value"}
	o := natsx.ConnectOptions{Name: t.Name(), Logger: natstest.Logger(t)}

	for name, tlsCfg := range map[string]natsx.TLS{
		"no TLS settings":       {},
		"no CA (system's)":      {CertFile: pki.clientCert, KeyFile: pki.clientKey},
		"no client certificate": {CAFile: pki.caFile},
	} {
		o.Auth = creds
		o.Auth.TLS = tlsCfg
		if nc, err := natsx.Connect(testContext(t), url, o); err == nil {
			nc.Close()
			t.Errorf("%s: connected", name)
		} else if strings.Contains(err.Error(), "tls-pa55-value") {
			t.Errorf("%s: error shows the password: %v", name, err)
		}
	}
	o.Auth = creds
	o.Auth.TLS = natsx.TLS{CAFile: pki.caFile, CertFile: pki.clientCert, KeyFile: pki.clientKey}
	nc, err := natsx.Connect(testContext(t), url, o)
	if err != nil {
		t.Fatalf("Connect over TLS: %v", err)
	}
	defer nc.Close()
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Errorf("the connection is not TLS: %v", err)
	}
}
