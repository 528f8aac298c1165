package cli

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/switchyard/switchyard/pkg/config"
	"github.com/switchyard/switchyard/pkg/signing"
)

func sendWebhookCmd(load func() (config.Config, error)) *cobra.Command {
	var (
		url, source, secret, id, data string
	)
	cmd := &cobra.Command{
		Use:   "send-webhook",
		Short: "Send a Standard Webhooks-signed request, as a partner would",
		Long: `Signs a request the way a Standard Webhooks partner does and posts it to ingress.
Without --secret and --url, both come from the configuration file (--config): the
source's first secret and ingress.listen.`,
		Example: `  switchyard send-webhook --data '{"type":"invoice.paid","amount":42}'
  switchyard send-webhook --source shop --secret whsec_... --url https://hooks.example.com/webhooks/shop`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if secret == "" || url == "" {
				cfg, err := load()
				if err != nil {
					return fmt.Errorf("%w (or give --secret and --url)", err)
				}
				src, ok := cfg.Source(source)
				if !ok {
					return fmt.Errorf("%w %q in the configuration (or give --secret and --url)", ErrUnknownSource, source)
				}
				if secret == "" {
					if src.Scheme != "standard-webhooks" || len(src.Secrets) == 0 {
						return fmt.Errorf("source %q uses %s; send-webhook signs Standard Webhooks: give --secret", source, src.Scheme)
					}
					secret = src.Secrets[0].Reveal()
				}
				if url == "" {
					url = "http://" + dialable(cfg.Ingress.Listen) + "/webhooks/" + source
				}
			}
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
	cmd.Flags().StringVar(&source, "source", "demo", "the webhook source to sign as")
	cmd.Flags().StringVar(&url, "url", "", "ingress webhook URL (default: http:// + ingress.listen + /webhooks/<source>)")
	cmd.Flags().StringVar(&secret, "secret", "", "the source's whsec_ secret (default: its first secret in the configuration)")
	cmd.Flags().StringVar(&id, "id", "", "webhook-id (default: a new one; reuse one to see deduplication)")
	cmd.Flags().StringVar(&data, "data", `{"type":"invoice.paid","invoice_id":"in_1042","amount_cents":4200}`, "JSON body")
	return cmd
}
