package apiproxy

import (
	"encoding/json"
	"net/http"
)

// EMS envelope statuses.
const (
	StatusSuccess = "SUCCESS"
	StatusFail    = "FAIL"
)

// Envelope is EMS's answer to every command.
type Envelope struct {
	Data        any    `json:"data"`
	Description string `json:"description"`
	Status      string `json:"status"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func succeeded(desc string, data any) Envelope {
	return Envelope{Data: data, Description: desc, Status: StatusSuccess}
}

// failed is a command that could not be done. EMS answers FAIL with HTTP
// 200, and so do we, so that EMS clients read the description.
func failed(desc string, data any) Envelope {
	return Envelope{Data: data, Description: desc, Status: StatusFail}
}
