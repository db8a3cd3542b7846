package apiproxy

import (
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParseEMSParams(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Args
		wantErr bool
	}{
		{b64("uri=http://a/b.mp3 localStreamName=radio1 "), Args{"uri": "http://a/b.mp3", "localStreamName": "radio1"}, false},
		{b64("uri=http://a/b?x=1&y=2 keepAlive=0"), Args{"uri": "http://a/b?x=1&y=2", "keepAlive": "0"}, false},
		{strings.TrimRight(b64("id=12 "), "="), Args{"id": "12"}, false},                                                  // unpadded
		{base64.URLEncoding.EncodeToString([]byte("uri=http://a/?~~~> ")), Args{"uri": "http://a/?~~~>"}, false},          // URL-safe
		{strings.ReplaceAll(base64.StdEncoding.EncodeToString([]byte("uri=>>>?")), "+", " "), Args{"uri": ">>>?"}, false}, // '+' turned into ' '
		{"", Args{}, false},
		{"!!!notbase64", nil, true},
		{b64("novalue"), nil, true},
		{b64("=x"), nil, true},
	} {
		got, err := ParseEMSParams(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseEMSParams(%q) error %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("ParseEMSParams(%q) = %v, want %v", tc.in, got, tc.want)
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("ParseEMSParams(%q)[%s] = %q, want %q", tc.in, k, got[k], v)
			}
		}
	}
}

func TestParseArgsSources(t *testing.T) {
	params := b64("uri=http://src/a.mp4 localStreamName=vod/a.mp4 ")
	for _, tc := range []struct {
		name string
		req  *http.Request
		want Args
	}{
		{"ems params", httptest.NewRequest("GET", "/apiproxy/pullStream?params="+params, nil),
			Args{"uri": "http://src/a.mp4", "localStreamName": "vod/a.mp4"}},
		{"plain query", httptest.NewRequest("GET", "/apiproxy/pullStream?uri=http%3A%2F%2Fsrc%2Fb.mp3&keepAlive=0", nil),
			Args{"uri": "http://src/b.mp3", "keepAlive": "0"}},
		{"params win over plain", httptest.NewRequest("GET", "/x?uri=http://other&params="+params, nil),
			Args{"uri": "http://src/a.mp4"}},
		{"json body", jsonReq(`{"uri":"http://src/c.m4a","keepAlive":false,"id":12}`),
			Args{"uri": "http://src/c.m4a", "keepAlive": "0", "id": "12"}},
	} {
		got, err := ParseArgs(tc.req)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		for k, v := range tc.want {
			if g, _ := got.Get(k); g != v {
				t.Errorf("%s: %s = %q, want %q (all %v)", tc.name, k, g, v, got)
			}
		}
	}
}

func jsonReq(body string) *http.Request {
	r := httptest.NewRequest("POST", "/apiproxy/pullStream", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	return r
}

func TestParseArgsRejects(t *testing.T) {
	for name, r := range map[string]*http.Request{
		"bad params":  httptest.NewRequest("GET", "/x?params=%%%", nil),
		"json array":  jsonReq(`[1,2]`),
		"json nested": jsonReq(`{"a":{"b":1}}`),
		"huge body":   jsonReq(`{"a":"` + strings.Repeat("x", maxBody) + `"}`),
	} {
		if _, err := ParseArgs(r); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestArgsGetIsCaseInsensitive(t *testing.T) {
	a := Args{"LocalStreamName": "x"}
	if v, ok := a.Get("localstreamname"); !ok || v != "x" {
		t.Fatal(v, ok)
	}
}

func FuzzParseEMSParams(f *testing.F) {
	for _, s := range []string{b64("uri=http://a/b.mp3 localStreamName=radio1 "), b64("id=1"), "", "%%", b64("a=b=c d= =e")} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		args, err := ParseEMSParams(in)
		if err != nil {
			return
		}
		// What parses re-encodes to something that parses to the same.
		again, err := ParseEMSParams(EncodeEMSParams(args))
		if err != nil || len(again) != len(args) {
			t.Fatalf("round trip of %v: %v %v", args, again, err)
		}
		for k, v := range args {
			if again[k] != v {
				t.Fatalf("round trip of %v: %v", args, again)
			}
		}
	})
}
