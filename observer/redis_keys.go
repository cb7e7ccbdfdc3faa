package observer

import "strings"

// SeqKey is the key of a course's sequence (it never expires).
func SeqKey(courseID string) string { return "coursestream:{" + courseID + "}:seq" }

// HistoryKey is the key of a course's history stream (entry ids <seq>-0).
func HistoryKey(courseID string) string { return "coursestream:{" + courseID + "}:history" }

// ChannelName is the pub/sub channel of a course (message: the envelope).
func ChannelName(courseID string) string { return "coursestream:{" + courseID + "}:events" }

// courseOfChannel returns the course id of a channel named by ChannelName.
func courseOfChannel(ch string) (string, bool) {
	const pre, suf = "coursestream:{", "}:events"
	if !strings.HasPrefix(ch, pre) || !strings.HasSuffix(ch, suf) || len(ch) <= len(pre)+len(suf) {
		return "", false
	}
	id := ch[len(pre) : len(ch)-len(suf)]
	return id, ValidCourseID(id)
}

// slotOf is the Redis Cluster hash slot of a key (CRC16/XMODEM of the hash
// tag, or of the whole key without one, modulo 16384).
func slotOf(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
