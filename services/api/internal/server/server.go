// Package server implements the public gRPC services of the api,
// StoreService and UserService, over the stores and users repositories.
// It is the one place where domain errors become gRPC status codes.
package server

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	storev1 "github.com/storeprov/storeprov/gen/storeprov/store/v1"
	"github.com/storeprov/storeprov/pkg/auth"
	"github.com/storeprov/storeprov/pkg/storeid"
	"github.com/storeprov/storeprov/services/api/internal/ent"
	enttoken "github.com/storeprov/storeprov/services/api/internal/ent/token"
	"github.com/storeprov/storeprov/services/api/internal/stores"
	"github.com/storeprov/storeprov/services/api/internal/users"
	"github.com/storeprov/storeprov/services/api/internal/watch"
)

// Server serves StoreService and UserService.
type Server struct {
	storev1.UnimplementedStoreServiceServer
	storev1.UnimplementedUserServiceServer
	Stores *stores.Service
	Users  *users.Service
	Hub    *watch.Hub
	// OIDC checks SignIn; nil or empty disables it.
	OIDC *users.OIDC
}

// IdempotencyKeyMetadata is the gRPC metadata key of a REST request's
// Idempotency-Key header, which CreateStore reads when the request has no
// request_id.
const IdempotencyKeyMetadata = "idempotency-key"

// CreateStore implements StoreService.
func (s *Server) CreateStore(ctx context.Context, req *storev1.CreateStoreRequest) (*storev1.Store, error) {
	caller := principal(ctx)
	if req.GetStore() == nil {
		return nil, status.Error(codes.InvalidArgument, "store: is required: send {\"displayName\": …, \"engine\": \"ENGINE_WOOCOMMERCE\"|\"ENGINE_MEDUSA\"}")
	}
	requestID := req.GetRequestId()
	if requestID == "" {
		// REST clients may send the key as a header; the gateway forwards it.
		if v := metadata.ValueFromIncomingContext(ctx, IdempotencyKeyMetadata); len(v) > 0 {
			requestID = v[0]
		}
	}
	st, _, err := s.Stores.Create(ctx, caller, req.GetStore().GetDisplayName(), req.GetStore().GetEngine(), requestID)
	if err != nil {
		return nil, toStatus(err)
	}
	return ToProto(st), nil
}

// GetStore implements StoreService.
func (s *Server) GetStore(ctx context.Context, req *storev1.GetStoreRequest) (*storev1.Store, error) {
	st, err := s.Stores.Get(ctx, principal(ctx), req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return ToProto(st), nil
}

// ListStores implements StoreService.
func (s *Server) ListStores(ctx context.Context, req *storev1.ListStoresRequest) (*storev1.ListStoresResponse, error) {
	list, next, err := s.Stores.List(ctx, principal(ctx), req.GetPageSize(), req.GetPageToken(), req.GetPhase())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &storev1.ListStoresResponse{NextPageToken: next}
	for _, st := range list {
		resp.Stores = append(resp.Stores, ToProto(st))
	}
	return resp, nil
}

// DeleteStore implements StoreService.
func (s *Server) DeleteStore(ctx context.Context, req *storev1.DeleteStoreRequest) (*storev1.Store, error) {
	st, err := s.Stores.Delete(ctx, principal(ctx), req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return ToProto(st), nil
}

// RetryStore implements StoreService.
func (s *Server) RetryStore(ctx context.Context, req *storev1.RetryStoreRequest) (*storev1.Store, error) {
	st, err := s.Stores.Retry(ctx, principal(ctx), req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return ToProto(st), nil
}

// UpgradeStore implements StoreService.
func (s *Server) UpgradeStore(ctx context.Context, req *storev1.UpgradeStoreRequest) (*storev1.Store, error) {
	st, err := s.Stores.Upgrade(ctx, principal(ctx), req.GetId(), strings.TrimSpace(req.GetChartVersion()), req.GetValues())
	if err != nil {
		return nil, toStatus(err)
	}
	return ToProto(st), nil
}

// WatchStores implements StoreService: it sends every store the caller may
// see, then each change to them, until the client goes away.
func (s *Server) WatchStores(_ *storev1.WatchStoresRequest, stream storev1.StoreService_WatchStoresServer) error {
	ctx := stream.Context()
	caller := principal(ctx)
	changes, cancel := s.Hub.Subscribe()
	defer cancel()
	token := ""
	for {
		page, next, err := s.Stores.List(ctx, caller, stores.MaxPageSize, token, storev1.Phase_PHASE_UNSPECIFIED)
		if err != nil {
			return toStatus(err)
		}
		for _, st := range page {
			if err := stream.Send(&storev1.WatchStoresResponse{Store: ToProto(st)}); err != nil {
				return err
			}
		}
		if token = next; token == "" {
			break
		}
	}
	if err := stream.Send(&storev1.WatchStoresResponse{SnapshotComplete: true}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case st, ok := <-changes:
			if !ok {
				return status.Error(codes.Unavailable, "watch fell behind: watch again to get the current stores")
			}
			if !caller.Admin && st.Owner != caller.Name {
				continue
			}
			if err := stream.Send(&storev1.WatchStoresResponse{Store: ToProto(st)}); err != nil {
				return err
			}
		}
	}
}

// GetCurrentUser implements UserService.
func (s *Server) GetCurrentUser(ctx context.Context, _ *storev1.GetCurrentUserRequest) (*storev1.User, error) {
	u, err := s.Users.Get(ctx, principal(ctx).Name)
	if err != nil {
		return nil, toStatus(err)
	}
	return userToProto(u), nil
}

// CreateToken implements UserService.
func (s *Server) CreateToken(ctx context.Context, req *storev1.CreateTokenRequest) (*storev1.CreateTokenResponse, error) {
	var ttl time.Duration
	if req.GetTtl() != nil {
		if err := req.GetTtl().CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "ttl: %v: give a duration such as \"720h\" (REST: \"2592000s\")", err)
		}
		ttl = req.GetTtl().AsDuration()
	}
	issued, err := s.Users.CreateToken(ctx, principal(ctx), users.TokenRequest{
		User: req.GetUser(), Admin: req.GetAdmin(), StoreQuota: req.GetStoreQuota(),
		Description: req.GetDescription(), TTL: ttl,
	})
	if err != nil {
		return nil, toStatus(err)
	}
	return &storev1.CreateTokenResponse{
		Token: issued.Secret, User: userToProto(issued.User),
		Info: s.tokenToProto(issued.Token), UserCreated: issued.UserCreated,
	}, nil
}

// ListTokens implements UserService.
func (s *Server) ListTokens(ctx context.Context, req *storev1.ListTokensRequest) (*storev1.ListTokensResponse, error) {
	list, err := s.Users.ListTokens(ctx, principal(ctx), req.GetUser())
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &storev1.ListTokensResponse{}
	for _, t := range list {
		resp.Tokens = append(resp.Tokens, s.tokenToProto(t))
	}
	return resp, nil
}

// DeleteToken implements UserService.
func (s *Server) DeleteToken(ctx context.Context, req *storev1.DeleteTokenRequest) (*storev1.Token, error) {
	t, err := s.Users.RevokeToken(ctx, principal(ctx), req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return s.tokenToProto(t), nil
}

// UpdateUser implements UserService.
func (s *Server) UpdateUser(ctx context.Context, req *storev1.UpdateUserRequest) (*storev1.User, error) {
	var change users.UserChange
	if req.Admin != nil {
		change.Admin = req.Admin
	}
	if req.StoreQuota != nil {
		change.StoreQuota = req.StoreQuota
	}
	u, err := s.Users.UpdateUser(ctx, principal(ctx), req.GetName(), change)
	if err != nil {
		return nil, toStatus(err)
	}
	return userToProto(u), nil
}

// SignIn implements UserService. It is a public method: the ID token is
// the credential.
func (s *Server) SignIn(ctx context.Context, req *storev1.SignInRequest) (*storev1.SignInResponse, error) {
	if req.GetIdToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "id_token: is required: pass the ID token the issuer returned")
	}
	id, err := s.OIDC.Verify(ctx, req.GetIdToken(), req.GetAccessToken())
	if err != nil {
		return nil, toStatus(err)
	}
	token, u, expires, err := s.Users.SignIn(ctx, id, s.OIDC.SessionTTL)
	if err != nil {
		return nil, toStatus(err)
	}
	return &storev1.SignInResponse{Token: token, User: userToProto(u), ExpireTime: timestamppb.New(expires)}, nil
}

// SignOut implements UserService.
func (s *Server) SignOut(ctx context.Context, _ *storev1.SignOutRequest) (*storev1.SignOutResponse, error) {
	token, _ := auth.BearerToken(ctx)
	revoked, err := s.Users.SignOut(ctx, token)
	if err != nil {
		return nil, toStatus(err)
	}
	return &storev1.SignOutResponse{Revoked: revoked}, nil
}

// ToProto converts a store row to its API form.
func ToProto(st *ent.Store) *storev1.Store {
	return &storev1.Store{
		Id:                 st.ID,
		DisplayName:        st.DisplayName,
		Engine:             st.Engine,
		Owner:              st.Owner,
		Phase:              st.Phase,
		FailureReason:      string(st.FailureReason),
		FailureMessage:     st.FailureMessage,
		Url:                st.URL,
		CreateTime:         timestamppb.New(st.CreateTime),
		UpdateTime:         timestamppb.New(st.UpdateTime),
		Generation:         st.Generation,
		ObservedGeneration: st.ObservedGeneration,
		Namespace:          storeid.Namespace(st.ID),
		ChartVersion:       st.ChartVersion,
		OrderCheckTime:     timestampOrNil(st.OrderCheckTime),
	}
}

// timestampOrNil converts an optional time; nil stays unset.
func timestampOrNil(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return timestamppb.New(*t)
}

func userToProto(u *ent.User) *storev1.User {
	return &storev1.User{
		Name: u.Name, Admin: u.Admin, StoreQuota: u.StoreQuota, CreateTime: timestamppb.New(u.CreateTime),
		SignIn: u.OidcIdentity != nil, OidcIssuer: users.Issuer(u),
	}
}

// tokenToProto describes t, whose user edge is loaded, without its secret.
func (s *Server) tokenToProto(t *ent.Token) *storev1.Token {
	kind := storev1.TokenKind_TOKEN_KIND_API
	if t.Kind == enttoken.KindSession {
		kind = storev1.TokenKind_TOKEN_KIND_SESSION
	}
	out := &storev1.Token{
		Id: strconv.Itoa(t.ID), Description: t.Description, Kind: kind,
		CreateTime: timestamppb.New(t.CreateTime), ExpireTime: timestamppb.New(s.Users.ExpireTime(t)),
	}
	if t.Edges.User != nil {
		out.User = t.Edges.User.Name
	}
	if t.LastUseTime != nil {
		out.LastUseTime = timestamppb.New(*t.LastUseTime)
	}
	return out
}

func principal(ctx context.Context) auth.Principal {
	p, _ := auth.PrincipalFrom(ctx)
	return p
}

// toStatus maps domain errors to gRPC status codes.
func toStatus(err error) error {
	var invalid *stores.InvalidFieldError
	switch {
	case errors.As(err, &invalid):
		return status.Error(codes.InvalidArgument, invalid.Error())
	case errors.Is(err, stores.ErrNotFound), errors.Is(err, users.ErrUserNotFound), errors.Is(err, users.ErrTokenNotFound), ent.IsNotFound(err):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, stores.ErrQuotaExceeded):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, stores.ErrWrongPhase):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, stores.ErrRequestIDReused):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, users.ErrForbidden), errors.Is(err, users.ErrNotAdmitted):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, users.ErrInvalid):
		return status.Error(codes.InvalidArgument, strings.TrimPrefix(err.Error(), users.ErrInvalid.Error()+": "))
	case errors.Is(err, auth.ErrUnauthenticated):
		return status.Error(codes.Unauthenticated, strings.TrimPrefix(err.Error(), auth.ErrUnauthenticated.Error()+": "))
	case errors.Is(err, users.ErrSignInDisabled):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, users.ErrIssuerUnavailable):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	}
	return status.Error(codes.Internal, "internal error: "+err.Error())
}
