package main

import (
	"encoding/json"
	"testing"
)

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", `"quoted" \ back`, "ctl \x00\x01\x1f\x7f", "tab\tnl\ncr\r", "é🎉", "bad \xff\xfe utf8", "\u2028\u2029", "<&>"} {
		var back string
		if err := json.Unmarshal(appendJSONString(nil, s), &back); err != nil {
			t.Errorf("appendJSONString(%q) = %s is not JSON: %v", s, appendJSONString(nil, s), err)
			continue
		}
		want, _ := json.Marshal(s)
		var wantBack string
		json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("appendJSONString(%q) decodes to %q; want %q", s, back, wantBack)
		}
	}
}
