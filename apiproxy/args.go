package apiproxy

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// maxBody bounds a request body: API arguments are small.
const maxBody = 1 << 20

// Args are a command's arguments, keyed by name as the caller spelled it;
// Get looks names up case-insensitively, as EMS does.
type Args map[string]string

// Get returns the argument called name, whatever its case.
func (a Args) Get(name string) (string, bool) {
	if v, ok := a[name]; ok {
		return v, true
	}
	for k, v := range a {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// ParseEMSParams decodes EMS's "params" argument: the base64 of
// space-separated key=value pairs ("uri=http://a/b.mp3 localStreamName=x ").
func ParseEMSParams(b64 string) (Args, error) {
	raw, err := decodeBase64(b64)
	if err != nil {
		return nil, fmt.Errorf("params: not base64: %w", err)
	}
	args := Args{}
	for _, field := range strings.Fields(string(raw)) {
		k, v, ok := strings.Cut(field, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("params: %q is not key=value", field)
		}
		args[k] = v
	}
	return args, nil
}

// decodeBase64 accepts standard and URL-safe base64, padded or not, since
// EMS clients send both and '+' often arrives as ' ' in a query string.
func decodeBase64(s string) ([]byte, error) {
	s = strings.TrimSpace(strings.ReplaceAll(s, " ", "+"))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	_, err := base64.StdEncoding.DecodeString(s)
	return nil, err
}

// ParseArgs gathers a request's arguments: plain query fields, the EMS
// "params" field, and a JSON object or form body. Later sources win.
func ParseArgs(r *http.Request) (Args, error) {
	args := Args{}
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("query string: %w", err)
	}
	if err := mergeFields(args, q); err != nil {
		return nil, err
	}
	if r.Body == nil || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return args, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("request body: %w", err)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return args, nil
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/x-www-form-urlencoded":
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, fmt.Errorf("form body: %w", err)
		}
		return args, mergeFields(args, form)
	default:
		obj := map[string]any{}
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, fmt.Errorf("body: expected a JSON object of arguments: %w", err)
		}
		for k, v := range obj {
			switch v := v.(type) {
			case string:
				args[k] = v
			case bool:
				args[k] = map[bool]string{true: "1", false: "0"}[v]
			case float64:
				args[k] = strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%f", v), "0"), ".")
			default:
				return nil, fmt.Errorf("body: argument %q must be a string, number or boolean", k)
			}
		}
		return args, nil
	}
}

func mergeFields(args Args, fields url.Values) error {
	for k, vs := range fields {
		if strings.EqualFold(k, "params") {
			continue
		}
		args[k] = vs[len(vs)-1]
	}
	for k, vs := range fields {
		if !strings.EqualFold(k, "params") {
			continue
		}
		p, err := ParseEMSParams(vs[len(vs)-1])
		if err != nil {
			return err
		}
		for k, v := range p {
			args[k] = v
		}
	}
	return nil
}

// EncodeEMSParams is the inverse of ParseEMSParams, as EMS clients build it.
func EncodeEMSParams(args map[string]string) string {
	var b strings.Builder
	for k, v := range args {
		b.WriteString(k + "=" + v + " ")
	}
	return base64.StdEncoding.EncodeToString([]byte(b.String()))
}

// parseBool reads EMS booleans: 1/0, true/false, yes/no.
func parseBool(name, v string) (bool, error) {
	switch strings.ToLower(v) {
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return false, fmt.Errorf("argument %s=%q: expected 1 or 0", name, v)
}
