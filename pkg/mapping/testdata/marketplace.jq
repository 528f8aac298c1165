{
  external_id: (.id | tostring),
  reference: .name,
  buyer: {email: .email, name: (.shipping_address.first_name + " " + .shipping_address.last_name)},
  ship_to: {city: .shipping_address.city, postal_code: .shipping_address.zip, country: .shipping_address.country_code},
  items: [.line_items[] | {sku, qty: .quantity, unit_price: {amount: .price, currency: $event.headers["x-currency"] // "EUR"}}],
  total: {amount: .total_price, currency: .currency},
  source: $event.source
}
