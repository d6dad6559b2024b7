package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/storeprov/storeprov/pkg/tracing"
)

// ContentType is the Content-Type header of every message: a protobuf
// message in binary encoding, named by HeaderMessageType.
const (
	ContentType       = "application/protobuf"
	HeaderMessageType = "Storeprov-Message-Type"
)

// Publish sends m to subject with msgID as its Nats-Msg-Id, so that
// publishing the same id again within DuplicateWindow is dropped by the
// server, and with the trace context of ctx's span in its headers
// (tracing.Inject), so that whoever handles it continues the trace. It
// returns once JetStream has stored the message.
func Publish(ctx context.Context, js jetstream.JetStream, subject, msgID string, m proto.Message) error {
	data, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("cannot encode %T: %w", m, err)
	}
	return PublishEncoded(ctx, js, subject, msgID, MessageType(m), data)
}

// MessageType is the full protobuf name of m, as carried in HeaderMessageType.
func MessageType(m proto.Message) string { return string(m.ProtoReflect().Descriptor().FullName()) }

// Decode reads a message published by Publish into m. A message of another
// type is an error: it cannot become valid by redelivery.
func Decode(msg jetstream.Msg, m proto.Message) error {
	return decode(msg.Subject(), msg.Headers(), msg.Data(), m)
}

// DecodeStored is Decode for a message read from a stream by sequence or
// subject (Stream.GetMsg, Stream.GetLastMsgForSubject).
func DecodeStored(msg *jetstream.RawStreamMsg, m proto.Message) error {
	return decode(msg.Subject, msg.Header, msg.Data, m)
}

func decode(subject string, header nats.Header, data []byte, m proto.Message) error {
	want := MessageType(m)
	if got := header.Get(HeaderMessageType); got != want {
		return fmt.Errorf("message on %s is %q, want %q", subject, got, want)
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return fmt.Errorf("cannot decode %s on %s: %w", want, subject, err)
	}
	return nil
}

// PublishEncoded is Publish for a message already encoded, such as one
// kept in an outbox: messageType is its full protobuf name. The trace
// context is ctx's, as with Publish.
func PublishEncoded(ctx context.Context, js jetstream.JetStream, subject, msgID, messageType string, data []byte) error {
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set("Content-Type", ContentType)
	msg.Header.Set(HeaderMessageType, messageType)
	tracing.Inject(ctx, tracing.Header(msg.Header))
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(msgID)); err != nil {
		return fmt.Errorf("cannot publish to %s: %w", subject, err)
	}
	return nil
}
