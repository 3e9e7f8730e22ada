//! The access-token validator: every claim required, HS512 only, time from the service clock,
//! key rotation by `kid`.

use crate::common::{Backend, TestApp, json, random_secret};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Duration;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kyros::auth::tokens::key_id;
use kyros::clock::Clock;
use kyros::model::{Role, User};
use secrecy::SecretString;
use serde_json::{Value, json};

const PASSWORD: &str = "correct horse battery staple";

fn valid_claims(app: &TestApp, user: &User) -> Value {
    let now = app.clock.now().timestamp();
    json!({
        "sub": user.username,
        "user_id": user.id,
        "role": "user",
        "iss": "kyros-praxis",
        "aud": "kyros-app",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

fn sign_with(secret: &str, kid: Option<String>, alg: Algorithm, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid;
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn sign(app: &TestApp, claims: &Value) -> String {
    let secret = app.secret();
    let kid = key_id(&SecretString::from(secret.clone()));
    sign_with(&secret, Some(kid), Algorithm::HS512, claims)
}

async fn status(app: &TestApp, token: &str) -> u16 {
    app.get_with_token("/auth/user", token)
        .await
        .status()
        .as_u16()
}

async fn setup(backend: Backend) -> Option<(TestApp, User)> {
    let app = TestApp::spawn(backend).await?;
    let user = app.create_user("tess", PASSWORD, Role::User).await;
    Some((app, user))
}

async fn a_correctly_crafted_token_is_accepted(backend: Backend) {
    let Some((app, user)) = setup(backend).await else {
        return;
    };
    // The control case: the same construction as the rejected tokens below, unmodified.
    assert_eq!(
        status(&app, &sign(&app, &valid_claims(&app, &user))).await,
        200
    );
}

async fn tokens_missing_a_required_claim_are_rejected(backend: Backend) {
    let Some((app, user)) = setup(backend).await else {
        return;
    };
    for claim in ["exp", "aud", "iss", "jti", "sub", "iat"] {
        let mut claims = valid_claims(&app, &user);
        claims.as_object_mut().expect("object").remove(claim);
        let res = app.get_with_token("/auth/user", &sign(&app, &claims)).await;
        assert_eq!(res.status(), 401, "token without {claim}");
        assert_eq!(json(res).await["detail"], "Could not validate credentials");
    }
}

async fn wrong_audience_or_issuer_is_rejected(backend: Backend) {
    let Some((app, user)) = setup(backend).await else {
        return;
    };
    let mut claims = valid_claims(&app, &user);
    claims["aud"] = json!("another-app");
    assert_eq!(status(&app, &sign(&app, &claims)).await, 401, "wrong aud");
    let mut claims = valid_claims(&app, &user);
    claims["iss"] = json!("someone-else");
    assert_eq!(status(&app, &sign(&app, &claims)).await, 401, "wrong iss");
}

async fn expiry_and_not_before_follow_the_service_clock(backend: Backend) {
    let Some((app, user)) = setup(backend).await else {
        return;
    };
    let issued = app.token("tess", PASSWORD).await;
    app.clock.advance(Duration::minutes(119));
    assert_eq!(
        status(&app, &issued).await,
        200,
        "still inside its 120 minutes"
    );
    app.clock.advance(Duration::minutes(2));
    assert_eq!(status(&app, &issued).await, 401, "expired");

    let now = app.clock.now().timestamp();
    let mut claims = valid_claims(&app, &user);
    claims["nbf"] = json!(now + 3600);
    assert_eq!(
        status(&app, &sign(&app, &claims)).await,
        401,
        "not yet valid"
    );
    let mut claims = valid_claims(&app, &user);
    claims["iat"] = json!(now + 3600);
    assert_eq!(
        status(&app, &sign(&app, &claims)).await,
        401,
        "issued in the future"
    );
    let mut claims = valid_claims(&app, &user);
    claims["nbf"] = json!(now + 10);
    assert_eq!(
        status(&app, &sign(&app, &claims)).await,
        200,
        "within the leeway"
    );
}

async fn other_algorithms_and_tampering_are_rejected(backend: Backend) {
    let Some((app, user)) = setup(backend).await else {
        return;
    };
    let claims = valid_claims(&app, &user);
    let kid = key_id(&SecretString::from(app.secret()));

    let hs256 = sign_with(&app.secret(), Some(kid.clone()), Algorithm::HS256, &claims);
    assert_eq!(status(&app, &hs256).await, 401, "HS256");

    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "none", "typ": "JWT"}).to_string());
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    assert_eq!(
        status(&app, &format!("{header}.{payload}.")).await,
        401,
        "alg none"
    );

    let good = sign(&app, &claims);
    let (signed, signature) = good.rsplit_once('.').expect("three parts");
    let mut sig = URL_SAFE_NO_PAD.decode(signature).expect("base64");
    sig[0] ^= 1;
    let tampered_sig = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(status(&app, &tampered_sig).await, 401, "tampered signature");

    let mut admin = claims.clone();
    admin["role"] = json!("admin");
    let parts: Vec<&str> = good.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(admin.to_string()),
        parts[2]
    );
    assert_eq!(status(&app, &forged).await, 401, "tampered payload");

    let foreign = sign_with(&random_secret(), Some(kid), Algorithm::HS512, &claims);
    assert_eq!(
        status(&app, &foreign).await,
        401,
        "signed with another secret"
    );
}

/// Verified tokens are remembered (by a hash of the token) to skip the signature check on the
/// next request: what was accepted once must still be checked as strictly — a copy with another
/// payload or signature, the time bounds, a logout.
async fn a_token_accepted_before_is_checked_as_strictly(backend: Backend) {
    let Some((app, user)) = setup(backend).await else {
        return;
    };
    let claims = valid_claims(&app, &user);
    let good = sign(&app, &claims);
    assert_eq!(status(&app, &good).await, 200, "first use");
    assert_eq!(status(&app, &good).await, 200, "second use");

    let parts: Vec<&str> = good.split('.').collect();
    let mut admin = claims.clone();
    admin["role"] = json!("admin");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(admin.to_string()),
        parts[2]
    );
    assert_eq!(
        status(&app, &forged).await,
        401,
        "payload of an accepted token changed"
    );
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("base64");
    let last = sig.len() - 1;
    sig[last] ^= 1;
    let tampered = format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig));
    assert_eq!(
        status(&app, &tampered).await,
        401,
        "signature of an accepted token changed"
    );

    // Refused while not yet valid, accepted once it is: a refusal is not remembered.
    let mut early = valid_claims(&app, &user);
    early["nbf"] = json!(app.clock.now().timestamp() + 120);
    let early = sign(&app, &early);
    assert_eq!(status(&app, &early).await, 401, "not yet valid");
    app.clock.advance(Duration::minutes(3));
    assert_eq!(status(&app, &early).await, 200, "valid now");

    // Accepted a moment ago, expired now (exp is 10 minutes after issue).
    assert_eq!(status(&app, &good).await, 200, "still valid");
    app.clock.advance(Duration::minutes(8));
    assert_eq!(status(&app, &good).await, 401, "expired since its last use");

    // A logout refuses the token on its next request.
    let issued = app.token("tess", PASSWORD).await;
    assert_eq!(status(&app, &issued).await, 200, "fresh login");
    let out = app
        .client
        .post(app.url("/auth/logout"))
        .bearer_auth(&issued)
        .send()
        .await
        .expect("logout");
    assert!(
        out.status().is_success(),
        "logout answered {}",
        out.status()
    );
    assert_eq!(status(&app, &issued).await, 401, "revoked at once");
}

/// A token signed over an arbitrary protected header (JSON text), HS512 with the app's secret.
fn sign_raw_header(app: &TestApp, header: &Value, claims: &Value) -> String {
    use hmac::{KeyInit, Mac};
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut mac = hmac::Hmac::<sha2::Sha512>::new_from_slice(app.secret().as_bytes()).expect("key");
    mac.update(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

/// RFC 7515 §4.1.11: a `crit` header naming anything the service does not process (it
/// processes no extension) makes the token invalid, and `[]` is not allowed at all.
async fn critical_header_extensions_are_refused(backend: Backend) {
    let Some((app, user)) = setup(backend).await else {
        return;
    };
    let kid = key_id(&SecretString::from(app.secret()));
    let claims = valid_claims(&app, &user);
    // The control: the same hand-made construction without `crit` is accepted.
    let plain = json!({"alg": "HS512", "typ": "JWT", "kid": kid});
    assert_eq!(
        status(&app, &sign_raw_header(&app, &plain, &claims)).await,
        200
    );
    let headers = [
        json!({"alg": "HS512", "typ": "JWT", "kid": kid, "crit": ["x-anything"], "x-anything": 1}),
        json!({"alg": "HS512", "typ": "JWT", "kid": kid, "crit": []}),
        json!({"alg": "HS512", "typ": "JWT", "kid": kid, "crit": ["exp"], "exp": 1}),
        json!({"alg": "HS512", "kid": kid, "crit": ["b64"], "b64": false}),
        json!({"alg": "HS512", "crit": ["x-anything"]}),
        json!({"alg": "HS512", "kid": kid, "crit": "x-anything"}),
    ];
    for header in headers {
        let token = sign_raw_header(&app, &header, &claims);
        assert_eq!(status(&app, &token).await, 401, "{header}");
    }
}

async fn previous_keys_verify_and_unknown_kids_are_rejected(backend: Backend) {
    let old_secret = random_secret();
    let Some(app) = TestApp::builder(backend)
        .var("PREVIOUS_SECRET_KEYS", old_secret.clone())
        .start()
        .await
    else {
        return;
    };
    let user = app.create_user("rot", PASSWORD, Role::User).await;
    let claims = valid_claims(&app, &user);
    let old_kid = key_id(&SecretString::from(old_secret.clone()));

    let by_old_key = sign_with(
        &old_secret,
        Some(old_kid.clone()),
        Algorithm::HS512,
        &claims,
    );
    assert_eq!(
        status(&app, &by_old_key).await,
        200,
        "a token of the previous key"
    );
    let without_kid = sign_with(&old_secret, None, Algorithm::HS512, &claims);
    assert_eq!(
        status(&app, &without_kid).await,
        200,
        "no kid: every configured key is tried"
    );

    let unknown = sign_with(
        &app.secret(),
        Some("0123456789abcdef".into()),
        Algorithm::HS512,
        &claims,
    );
    assert_eq!(status(&app, &unknown).await, 401, "unknown kid");
    let retired = random_secret();
    let retired_kid = key_id(&SecretString::from(retired.clone()));
    let by_retired = sign_with(&retired, Some(retired_kid), Algorithm::HS512, &claims);
    assert_eq!(
        status(&app, &by_retired).await,
        401,
        "a key that is no longer configured"
    );

    // New tokens are signed with the current key.
    let fresh = app.token("rot", PASSWORD).await;
    let header = jsonwebtoken::decode_header(&fresh).expect("header");
    assert_eq!(header.alg, Algorithm::HS512);
    assert_eq!(header.kid, Some(key_id(&SecretString::from(app.secret()))));
    assert_ne!(header.kid, Some(old_kid));
}

async fn issued_tokens_carry_the_documented_claims(backend: Backend) {
    let Some((app, user)) = setup(backend).await else {
        return;
    };
    let token = app.token("tess", PASSWORD).await;
    let payload = token.split('.').nth(1).expect("payload");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("b64")).expect("json");
    let now = app.clock.now().timestamp();
    assert_eq!(claims["sub"], "tess");
    assert_eq!(claims["user_id"], user.id.to_string());
    assert_eq!(claims["role"], "user");
    assert_eq!(claims["iss"], "kyros-praxis");
    assert_eq!(claims["aud"], "kyros-app");
    assert_eq!(claims["iat"], now);
    assert_eq!(claims["nbf"], now);
    assert_eq!(claims["exp"], now + 7200);
    let other = app.token("tess", PASSWORD).await;
    let other_claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(other.split('.').nth(1).expect("payload"))
            .expect("b64"),
    )
    .expect("json");
    assert_ne!(claims["jti"], other_claims["jti"], "jti is unique");
}

backend_tests!(
    critical_header_extensions_are_refused,
    a_correctly_crafted_token_is_accepted,
    tokens_missing_a_required_claim_are_rejected,
    wrong_audience_or_issuer_is_rejected,
    expiry_and_not_before_follow_the_service_clock,
    other_algorithms_and_tampering_are_rejected,
    a_token_accepted_before_is_checked_as_strictly,
    previous_keys_verify_and_unknown_kids_are_rejected,
    issued_tokens_carry_the_documented_claims,
);
