// Package loadconn is the load generators' HTTP/1.1 client: one keep-alive
// connection, requests written and responses read with reused buffers, as
// wrk or hey do. net/http's client would cost a load run more CPU than the
// server it measures. BenchmarkIngress and the benchmark table
// (tests/benchtable) both drive ingress with it.
package loadconn

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strconv"
)

// Conn is one keep-alive connection. It is not safe for concurrent use.
type Conn struct {
	net.Conn
	host string
	w    *bufio.Writer
	r    *bufio.Reader
	req  []byte
	// Body is scratch space a caller may build its request bodies in.
	Body []byte
}

// Dial connects to addr (host:port), which is also the requests' Host.
func Dial(addr string) (*Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c, host: addr, w: bufio.NewWriterSize(c, 4096), r: bufio.NewReaderSize(c, 4096)}, nil
}

// Post sends one POST with the given header name, value pairs and returns
// the response's status, having read its body (which must have a
// Content-Length).
func (c *Conn) Post(path string, body []byte, header ...string) (int, error) {
	b := append(c.req[:0], "POST "...)
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, c.host...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	for i := 0; i+1 < len(header); i += 2 {
		b = append(b, "\r\n"...)
		b = append(b, header[i]...)
		b = append(b, ": "...)
		b = append(b, header[i+1]...)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.req = b
	if _, err := c.w.Write(b); err != nil {
		return 0, err
	}
	if err := c.w.Flush(); err != nil {
		return 0, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
	if length < 0 {
		return 0, fmt.Errorf("response without Content-Length")
	}
	if _, err := c.r.Discard(length); err != nil {
		return 0, err
	}
	return status, nil
}
