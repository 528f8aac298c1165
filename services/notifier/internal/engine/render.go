package engine

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	switchyardv1 "github.com/switchyard/switchyard/proto/switchyard/v1"
	"github.com/switchyard/switchyard/services/notifier/internal/alerting"
	"github.com/switchyard/switchyard/services/notifier/internal/rules"
	"github.com/switchyard/switchyard/services/notifier/internal/sender"
)

// render writes the message p about alert a, in condition c. before is
// what the sender was last told the count was.
func (e *Engine) render(a *switchyardv1.Alert, c rules.Condition, p *switchyardv1.PendingNotification, before int64) *switchyardv1.Notification {
	state := switchyardv1.AlertState_ALERT_STATE_FIRING
	if p.Kind == alerting.KindResolved {
		state = switchyardv1.AlertState_ALERT_STATE_RESOLVED
	}
	first := a.GetFirstSeen().AsTime()
	summary := c.Summary
	var title string
	var fields []*switchyardv1.NotificationField
	field := func(label, value string) {
		fields = append(fields, &switchyardv1.NotificationField{Label: label, Value: value})
	}
	switch p.Kind {
	case alerting.KindResolved:
		summary = fmt.Sprintf("%s resolved: it fired for %s", describe(a), rules.FormatDuration(a.GetResolvedAt().AsTime().Sub(first)))
		if alerting.Late(a, p) {
			// The episode's own times and count were replaced by the new
			// episode's: it ended before the new one fired.
			summary = fmt.Sprintf("%s resolved before it fired again at %s", describe(a), rules.FormatTime(a.GetFiredAt().AsTime()))
		}
		title = "[RESOLVED]" + severityTag(a) + " " + summary
		for _, k := range []string{"destination", "source"} {
			if v := a.GetLabels()[k]; v != "" {
				field(labelTitle(k), v)
			}
		}
		field("Rule", a.GetRule())
		if c.Digest && !alerting.Late(a, p) {
			field("Total", strconv.FormatInt(c.Count, 10))
		}
	default:
		prefix := "[FIRING]"
		switch p.Kind {
		case alerting.KindUpdate:
			prefix = "[UPDATE]"
			if c.Digest && c.Count > before && c.DigestSummary != nil {
				summary = c.DigestSummary(c.Count-before, c.Count)
			}
		case alerting.KindRepeat:
			prefix = "[STILL FIRING]"
		}
		title = prefix + severityTag(a) + " " + summary
		for _, f := range c.Fields {
			field(f.Label, f.Value)
		}
		if p.Kind == alerting.KindUpdate && c.Digest {
			field("New since the last message", strconv.FormatInt(c.Count-before, 10))
		}
		field("Rule", a.GetRule())
		field("Severity", a.GetSeverity())
	}
	if !alerting.Late(a, p) {
		field("First seen", rules.FormatTime(first))
	}
	if p.Kind == alerting.KindResolved && !alerting.Late(a, p) {
		field("Resolved", rules.FormatTime(a.GetResolvedAt().AsTime()))
	}
	n := &switchyardv1.Notification{
		Alert: &switchyardv1.AlertNotification{
			Fingerprint: a.GetFingerprint(), Rule: a.GetRule(), Labels: a.GetLabels(), State: state,
			Severity: a.GetSeverity(), Summary: summary, Count: c.Count, Kind: p.Kind, Sequence: p.Sequence,
			Episode: p.Episode, FirstSeen: a.GetFirstSeen(),
		},
		Title: title, Fields: fields, CreatedAt: timestamppb.New(p.GetCreatedAt().AsTime()),
	}
	if base := strings.TrimSuffix(e.cfg.Rules.Alerts.PublicBaseURL, "/"); base != "" && c.LinkPath != "" {
		n.Link, n.LinkText = base+c.LinkPath, c.LinkText
	}
	return n
}

// severityTag is the title's severity: "[warning]", "[critical]".
func severityTag(a *switchyardv1.Alert) string {
	if a.GetSeverity() == "" {
		return ""
	}
	return "[" + a.GetSeverity() + "]"
}

// describe names an alert for a title: "PartnerDown on erp".
func describe(a *switchyardv1.Alert) string {
	s := a.GetRule()
	if d := a.GetLabels()["destination"]; d != "" {
		s += " on " + d
	}
	if src := a.GetLabels()["source"]; src != "" {
		s += " for " + src
	}
	return s
}

func labelTitle(k string) string { return strings.ToUpper(k[:1]) + k[1:] }

// senderAlert turns a message into what a sender sends.
func senderAlert(n *switchyardv1.Notification) sender.Alert {
	a := n.GetAlert()
	out := sender.Alert{
		Title: n.GetTitle(), Firing: a.GetState() != switchyardv1.AlertState_ALERT_STATE_RESOLVED,
		Link: n.GetLink(), LinkText: n.GetLinkText(),
		Fingerprint: a.GetFingerprint(), Rule: a.GetRule(), Labels: a.GetLabels(), Severity: a.GetSeverity(),
		Kind: a.GetKind(), Summary: a.GetSummary(), Sequence: a.GetSequence(), Count: a.GetCount(),
	}
	if a.GetFirstSeen() != nil {
		out.FirstSeen = a.GetFirstSeen().AsTime()
	}
	for _, f := range n.GetFields() {
		out.Fields = append(out.Fields, sender.Field{Label: f.GetLabel(), Value: f.GetValue()})
	}
	return out
}
