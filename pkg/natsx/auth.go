package natsx

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
)

// Auth is how a client proves who it is to a NATS server, and the TLS it
// speaks. At most one of the credentials (user and password, token, nkey
// seed file, credentials file) is set; none connects anonymously.
// Password and Token are secrets: no error or log line of this package
// contains them.
type Auth struct {
	// User and Password: the server's user/password authentication.
	User     string
	Password string
	// Token: the server's token authentication.
	Token string
	// NKeySeedFile is a file holding a user nkey seed ("SU…"): the server
	// knows the public key, the client signs the server's nonce.
	NKeySeedFile string
	// CredentialsFile is a .creds file (a user JWT and its nkey seed), for
	// a server in operator (decentralised JWT) mode.
	CredentialsFile string
	// TLS: when any field is set the connection uses TLS.
	TLS TLS
}

// TLS is the client side of a TLS connection to NATS.
type TLS struct {
	// CAFile is a PEM file of the certificate authorities the server's
	// certificate must chain to. Empty: the system's.
	CAFile string
	// CertFile and KeyFile are the client certificate and key, for a
	// server that verifies clients (mutual TLS). Both or neither.
	CertFile string
	KeyFile  string
}

// Enabled reports whether any TLS setting is present.
func (t TLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// options turns a into nats.go options. Its errors name files, never
// secrets.
func (a Auth) options() ([]nats.Option, error) {
	var opts []nats.Option
	n := 0
	if a.User != "" || a.Password != "" {
		n++
		if a.User == "" || a.Password == "" {
			return nil, errors.New("NATS user/password authentication needs both a user and a password")
		}
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	}
	if a.Token != "" {
		n++
		opts = append(opts, nats.Token(a.Token))
	}
	if a.NKeySeedFile != "" {
		n++
		opt, err := nats.NkeyOptionFromSeed(a.NKeySeedFile)
		if err != nil {
			// nats.go's error names the file or the seed's form, not its
			// content; wrap it without %v of anything else.
			return nil, fmt.Errorf("NATS nkey seed file %s: %w", a.NKeySeedFile, err)
		}
		opts = append(opts, opt)
	}
	if a.CredentialsFile != "" {
		n++
		if _, err := os.Stat(a.CredentialsFile); err != nil {
			return nil, fmt.Errorf("NATS credentials file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(a.CredentialsFile))
	}
	if n > 1 {
		return nil, errors.New("NATS authentication: set only one of user/password, token, nkey seed file and credentials file")
	}
	if a.TLS.CertFile != "" || a.TLS.KeyFile != "" {
		if a.TLS.CertFile == "" || a.TLS.KeyFile == "" {
			return nil, errors.New("NATS TLS client certificate needs both a certificate file and a key file")
		}
		opts = append(opts, nats.ClientCert(a.TLS.CertFile, a.TLS.KeyFile))
	}
	if a.TLS.CAFile != "" {
		opts = append(opts, nats.RootCAs(a.TLS.CAFile))
	}
	if a.TLS.Enabled() {
		opts = append(opts, nats.Secure())
	}
	return opts, nil
}

// EmbeddedUser is the user of the embedded server's one credential.
const EmbeddedUser = "switchyard"

// ErrPasswordFileMode means the embedded server's password file may be
// read by other users of the machine.
var ErrPasswordFileMode = errors.New("NATS password file is readable by other users")

// LoadOrCreatePassword returns the password kept in path, writing a new
// random one (32 bytes, base64url, mode 0600) the first time. A file that
// group or others may read or write is refused: the password is the only
// thing between a local user and every event.
func LoadOrCreatePassword(path string) (string, error) {
	pw, err := ReadPassword(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return pw, err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate the embedded NATS password: %w", err)
	}
	pw = base64.RawURLEncoding.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("embedded NATS password: %w", err)
	}
	// O_EXCL: two processes starting at once do not overwrite each other's;
	// the loser reads the winner's.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return ReadPassword(path)
	}
	if err != nil {
		return "", fmt.Errorf("write the embedded NATS password: %w", err)
	}
	_, werr := f.WriteString(pw + "\n")
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("write the embedded NATS password %s: %w", path, werr)
	}
	return pw, nil
}

// ReadPassword reads the password LoadOrCreatePassword wrote, refusing a
// file others may read.
func ReadPassword(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("embedded NATS password: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%w: %s has mode %#o; run chmod 600 %s", ErrPasswordFileMode, path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("embedded NATS password: %w", err)
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		return "", fmt.Errorf("embedded NATS password: %s is empty; remove it to have a new one generated", path)
	}
	return pw, nil
}
