package cli

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/pkg/signing"
)

func sendWebhookCmd() *cobra.Command {
	var (
		url, secret, id, data string
	)
	cmd := &cobra.Command{
		Use:   "send-webhook",
		Short: "Send a Standard Webhooks-signed request, as a partner would",
		Example: `  switchyard send-webhook --url http://127.0.0.1:8080/webhooks/demo \
    --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw --data '{"type":"invoice.paid","amount":42}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sw, err := signing.NewStandardWebhooks([]string{secret}, time.Minute)
			if err != nil {
				return fmt.Errorf("--secret: %w", err)
			}
			if id == "" {
				id = "msg_" + strconv.FormatInt(time.Now().UnixNano(), 36)
			}
			now := time.Now()
			body := []byte(data)
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				return fmt.Errorf("--url: %w", err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(signing.HeaderWebhookID, id)
			req.Header.Set(signing.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
			req.Header.Set(signing.HeaderWebhookSignature, sw.Sign(id, now, body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			out, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
			cmd.Printf("%s %s\n%s\n", resp.Proto, resp.Status, bytes.TrimSpace(out))
			if resp.StatusCode >= 300 {
				return fmt.Errorf("the webhook was not accepted (%s)", resp.Status)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "http://127.0.0.1:8080/webhooks/demo", "ingress webhook URL")
	cmd.Flags().StringVar(&secret, "secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "the source's whsec_ secret")
	cmd.Flags().StringVar(&id, "id", "", "webhook-id (default: a new one; reuse one to see deduplication)")
	cmd.Flags().StringVar(&data, "data", `{"type":"invoice.paid","invoice_id":"in_1042","amount_cents":4200}`, "JSON body")
	return cmd
}
