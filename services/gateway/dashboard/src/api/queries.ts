// TanStack Query hooks over the typed client. The store list and each store
// live in the query cache; the watch stream and every mutation write the
// newest state of a store into both.
import { useEffect, useState } from "react";
import {
  useInfiniteQuery,
  useMutation,
  useQuery,
  useQueryClient,
  type QueryClient,
} from "@tanstack/react-query";
import { unwrap, type AuditQuery, type Engine, type Store } from "./client";
import { upsertStore } from "./storeCache";
import { watchStores, type WatchState } from "./watch";
import { useSession, useSessionState } from "../session/session";

/** Query keys, in one place so that writers and readers agree. */
export const queryKeys = {
  stores: ["stores"] as const,
  store: (id: string) => ["store", id] as const,
  audit: (q: AuditQuery) => ["audit", q] as const,
  auditAll: ["audit"] as const,
  authConfig: ["authConfig"] as const,
  tokens: (user: string) => ["tokens", user] as const,
  tokensAll: ["tokens"] as const,
};

/** The most pages of stores the list follows (500 stores each). */
const maxStorePages = 20;

/**
 * writeStore puts a store's newest state into the cache: the list and the
 * store's own entry. An older state than the cached one is ignored.
 */
export function writeStore(qc: QueryClient, store: Store): void {
  if (!store.id) return;
  const before = qc.getQueryData<Store>(queryKeys.store(store.id));
  qc.setQueryData<Store[]>(queryKeys.stores, (list) => (list ? upsertStore(list, store) : list));
  const after = upsertStore(before ? [before] : [], store)[0];
  qc.setQueryData<Store>(queryKeys.store(store.id), after);
  // A new phase means a new audit entry: refresh what shows the log.
  if (before && (before.phase !== store.phase || before.generation !== store.generation)) {
    void qc.invalidateQueries({ queryKey: queryKeys.auditAll });
  }
}

/** useStores lists every store the caller may see, newest first. */
export function useStores() {
  const { api } = useSession();
  const qc = useQueryClient();
  return useQuery({
    queryKey: queryKeys.stores,
    queryFn: async ({ signal }) => {
      let stores: Store[] = [];
      let pageToken: string | undefined;
      for (let page = 0; page < maxStorePages; page++) {
        const res = unwrap(
          await api.GET("/v1/stores", { params: { query: { pageSize: 500, ...(pageToken && { pageToken }) } }, signal }),
        );
        for (const s of res.stores ?? []) stores = upsertStore(stores, s);
        pageToken = res.nextPageToken || undefined;
        if (!pageToken) break;
      }
      // The watch may have delivered newer states while the pages loaded.
      for (const s of qc.getQueryData<Store[]>(queryKeys.stores) ?? []) stores = upsertStore(stores, s);
      return stores;
    },
  });
}

/** useStore returns one store, starting from the list's copy when there is one. */
export function useStore(id: string) {
  const { api } = useSession();
  const qc = useQueryClient();
  return useQuery({
    queryKey: queryKeys.store(id),
    queryFn: ({ signal }) => api.GET("/v1/stores/{id}", { params: { path: { id } }, signal }).then(unwrap),
    initialData: () => qc.getQueryData<Store[]>(queryKeys.stores)?.find((s) => s.id === id),
    initialDataUpdatedAt: () => qc.getQueryState(queryKeys.stores)?.dataUpdatedAt,
  });
}

/** Page size of audit queries. */
export const auditPageSize = 100;

/**
 * useAuditEntries pages through the audit log, oldest first, matching q.
 * refetchEveryMs, when set, asks again at that interval (every loaded page).
 */
export function useAuditEntries(q: AuditQuery, opts: { enabled?: boolean; refetchEveryMs?: number | false } = {}) {
  const { api } = useSession();
  return useInfiniteQuery({
    queryKey: queryKeys.audit(q),
    enabled: opts.enabled ?? true,
    refetchInterval: opts.refetchEveryMs ?? false,
    initialPageParam: "",
    queryFn: ({ pageParam, signal }) =>
      api
        .GET("/v1/auditEntries", {
          params: { query: { ...q, pageSize: auditPageSize, ...(pageParam && { pageToken: pageParam }) } },
          signal,
        })
        .then(unwrap),
    getNextPageParam: (last) => last.nextPageToken || undefined,
  });
}

/** useCreateStore creates a store; the new store enters the cache at once. */
export function useCreateStore() {
  const { api } = useSession();
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (input: { displayName: string; engine: Engine }) =>
      api.POST("/v1/stores", { body: input }).then(unwrap),
    onSuccess: (store) => writeStore(qc, store),
  });
}

/** useDeleteStore asks for a store's deletion; the cache shows it DELETING. */
export function useDeleteStore() {
  const { api } = useSession();
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (id: string) => api.DELETE("/v1/stores/{id}", { params: { path: { id } } }).then(unwrap),
    onSuccess: (store) => writeStore(qc, store),
  });
}

/** useRetryStore provisions a FAILED store again. */
export function useRetryStore() {
  const { api } = useSession();
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (id: string) => api.POST("/v1/stores/{id}:retry", { params: { path: { id } }, body: {} }).then(unwrap),
    onSuccess: (store) => writeStore(qc, store),
  });
}

/**
 * useUpgradeStore asks for a READY store's upgrade to chartVersion (empty:
 * the newest chart); the cache shows it PROVISIONING on its new generation.
 */
export function useUpgradeStore() {
  const { api } = useSession();
  const qc = useQueryClient();
  return useMutation({
    mutationFn: ({ id, chartVersion }: { id: string; chartVersion?: string }) =>
      api
        .POST("/v1/stores/{id}:upgrade", { params: { path: { id } }, body: chartVersion ? { chartVersion } : {} })
        .then(unwrap),
    onSuccess: (store) => writeStore(qc, store),
  });
}

/**
 * useStoreWatch follows the watch stream while mounted, writing every store
 * it sends into the cache, and returns where the stream is.
 */
export function useStoreWatch(): WatchState {
  const { api, expire } = useSession();
  const qc = useQueryClient();
  const [state, setState] = useState<WatchState>({ status: "connecting" });
  useEffect(() => {
    const ctrl = new AbortController();
    void watchStores({
      api,
      signal: ctrl.signal,
      onStore: (s) => writeStore(qc, s),
      onState: setState,
      onUnauthenticated: expire,
    });
    return () => ctrl.abort();
  }, [api, qc, expire]);
  return state;
}

/**
 * useAuthConfig asks the gateway which ways of signing in it offers, once
 * until the next sign-out clears the cache. It never fails: when the gateway
 * cannot say, the answer is API tokens only.
 */
export function useAuthConfig() {
  const { loadAuthConfig } = useSessionState();
  return useQuery({ queryKey: queryKeys.authConfig, queryFn: loadAuthConfig, staleTime: Infinity });
}

/** useTokens lists user's tokens that have not expired (empty: the caller's), newest first. */
export function useTokens(user: string) {
  const { api } = useSession();
  return useQuery({
    queryKey: queryKeys.tokens(user),
    queryFn: ({ signal }) =>
      api.GET("/v1/tokens", { params: { query: user ? { user } : {} }, signal }).then(unwrap).then((r) => r.tokens ?? []),
  });
}

/** useCreateToken issues an API token; ttlSeconds 0 asks for the longest allowed. */
export function useCreateToken() {
  const { api } = useSession();
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (input: { user: string; description: string; ttlSeconds: number }) =>
      api
        .POST("/v1/tokens", {
          body: {
            ...(input.user && { user: input.user }),
            description: input.description,
            ...(input.ttlSeconds > 0 && { ttl: `${input.ttlSeconds}s` }),
          },
        })
        .then(unwrap),
    onSuccess: () => void qc.invalidateQueries({ queryKey: queryKeys.tokensAll }),
  });
}

/** useRevokeToken revokes a token at once; its next call is refused. */
export function useRevokeToken() {
  const { api } = useSession();
  const qc = useQueryClient();
  return useMutation({
    mutationFn: (id: string) => api.DELETE("/v1/tokens/{id}", { params: { path: { id } } }).then(unwrap),
    onSuccess: () => void qc.invalidateQueries({ queryKey: queryKeys.tokensAll }),
  });
}
