package main

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Task is one user's todo item as the API shows it.
type Task struct {
	ID          int64
	UserID      string
	Title       string
	Description *string
	Completed   bool
	CreatedAt   time.Time
	UpdatedAt   time.Time
	Version     int64 // bumped by every write; shown only as the ETag
}

// etag is the task's strong entity tag: its row version, not a timestamp.
func (t *Task) etag() string { return etagOf(t.Version) }

func etagOf(version int64) string { return `"v` + strconv.FormatInt(version, 10) + `"` }

// etagCondition is a parsed If-Match or If-None-Match header.
type etagCondition struct {
	any      bool    // "*"
	versions []int64 // the versions of the entity tags it lists
}

// parseETagCondition reads every value of header; nil means the header is
// absent. Tags that are not ours are kept as matching nothing. Weak tags
// count only where weak comparison applies (If-None-Match).
func parseETagCondition(h http.Header, name string, weakMatches bool) *etagCondition {
	values := h.Values(name)
	if len(values) == 0 {
		return nil
	}
	c := &etagCondition{versions: []int64{}}
	for _, value := range values {
		for _, tag := range strings.Split(value, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" {
				c.any = true
				continue
			}
			if strings.HasPrefix(tag, "W/") {
				if !weakMatches {
					continue
				}
				tag = tag[2:]
			}
			if len(tag) < 4 || !strings.HasPrefix(tag, `"v`) || !strings.HasSuffix(tag, `"`) {
				continue
			}
			if v, ok := parsePositiveDecimal(tag[2 : len(tag)-1]); ok {
				c.versions = append(c.versions, v)
			}
		}
	}
	return c
}

// matches reports whether a task at version satisfies the condition.
func (c *etagCondition) matches(version int64) bool {
	if c.any {
		return true
	}
	for _, v := range c.versions {
		if v == version {
			return true
		}
	}
	return false
}

// ifMatchVersions turns If-Match into the store's argument: nil for no
// condition ("*" only asks that the task exists, which every write does).
func ifMatchVersions(r *http.Request) []int64 {
	c := parseETagCondition(r.Header, "If-Match", false)
	if c == nil || c.any {
		return nil
	}
	return c.versions
}

// timeLayout is RFC 3339 with the microseconds PostgreSQL keeps, always
// six digits so clients can compare times as strings.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

// appendJSON writes t as the contract's JSON object without reflection; it
// runs for every task of every list.
func (t *Task) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = strconv.AppendInt(b, t.ID, 10)
	b = append(b, `,"user_id":`...)
	b = appendJSONString(b, t.UserID)
	b = append(b, `,"title":`...)
	b = appendJSONString(b, t.Title)
	b = append(b, `,"description":`...)
	if t.Description == nil {
		b = append(b, "null"...)
	} else {
		b = appendJSONString(b, *t.Description)
	}
	b = append(b, `,"completed":`...)
	b = strconv.AppendBool(b, t.Completed)
	b = append(b, `,"created_at":"`...)
	b = appendTimestamp(b, t.CreatedAt)
	b = append(b, `","updated_at":"`...)
	b = appendTimestamp(b, t.UpdatedAt)
	return append(b, `"}`...)
}

// appendTimestamp writes t as timeLayout does, several times faster: it
// runs twice for every task of every answer.
func appendTimestamp(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, timeLayout)
	}
	hour, minute, second := t.Clock()
	micro := t.Nanosecond() / 1000
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, second, 2)
	b = append(b, '.')
	b = appendDigits(b, micro, 6)
	return append(b, 'Z')
}

// appendDigits writes the last width decimal digits of a non-negative n.
func appendDigits(b []byte, n, width int) []byte {
	var digits [8]byte
	for i := width - 1; i >= 0; i-- {
		digits[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, digits[:width]...)
}
