import { describe, expect, it } from "vitest";
import { readArrival, rememberRoute, returnRouteStorageKey, type Arrival } from "./oidcRedirect";

describe("readArrival", () => {
  const at = (hash: string) => ({ hash, pathname: "/", search: "" });
  const cases: { name: string; hash: string; remembered?: string; want: Arrival | null }[] = [
    { name: "an ordinary route is no arrival", hash: "#/stores/abc", want: null },
    { name: "a route with a query is no arrival", hash: "#/activity?actor=session", want: null },
    { name: "no fragment is no arrival", hash: "", want: null },
    { name: "another fragment is no arrival", hash: "#main", want: null },
    { name: "a session token, back to the remembered route", hash: "#session=sp_abc", remembered: "#/stores/abc", want: { token: "sp_abc", url: "/#/stores/abc" } },
    { name: "a session token, to the store list by default", hash: "#session=sp_abc", want: { token: "sp_abc", url: "/#/" } },
    { name: "a percent-encoded token is decoded", hash: "#session=sp_a%2Bb", want: { token: "sp_a+b", url: "/#/" } },
    {
      name: "an error, percent-encoded",
      hash: "#signin_error=access%20denied%3A%20ask%20an%20admin",
      want: { error: "access denied: ask an admin", url: "/#/" },
    },
    { name: "an error, form-encoded", hash: "#signin_error=access+denied", want: { error: "access denied", url: "/#/" } },
    { name: "an empty session is an error", hash: "#session=", want: { error: "The sign-in returned no session token. Try again.", url: "/#/" } },
    { name: "a remembered value that is no route is ignored", hash: "#session=sp_abc", remembered: "#session=sp_old", want: { token: "sp_abc", url: "/#/" } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      if (c.remembered) sessionStorage.setItem(returnRouteStorageKey, c.remembered);
      expect(readArrival(at(c.hash))).toEqual(c.want);
    });
  }
});

describe("rememberRoute", () => {
  it("keeps a route and turns anything else into the store list", () => {
    rememberRoute("#/activity?actor=alice");
    expect(sessionStorage.getItem(returnRouteStorageKey)).toBe("#/activity?actor=alice");
    rememberRoute("");
    expect(sessionStorage.getItem(returnRouteStorageKey)).toBe("#/");
  });
});
