//! Limiter state in Redis: one atomic Lua script per decision (EVALSHA), keys with a TTL, under
//! the deployment's key prefix. Instances share budgets because they share these keys.

use redis::Script;

use super::gcra::{Gcra, Step};
use crate::store::redis::{Redis, RedisError};

/// The GCRA step of `gcra.rs`, atomically. KEYS[1] bucket, KEYS[2] penalty (its end, in µs).
/// ARGV: now_us, emission_us, tolerance_us, cost, penalty_factor, mode ("decide"|"strike"),
/// penalty_until_us. Returns {allowed (0|1), tat, newly_penalized (0|1), cost charged}.
const SCRIPT: &str = r#"
local now = tonumber(ARGV[1])
local T = tonumber(ARGV[2])
local tau = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local mode = ARGV[6]
local penalty_until = tonumber(redis.call('GET', KEYS[2]))
local penalized = penalty_until ~= nil and penalty_until > now
if mode == "decide" and penalized then
  cost = cost * tonumber(ARGV[5])
end
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local new_tat = tat + T * cost
if now < new_tat - tau - T then
  local newly = 0
  if mode == "strike" then
    local until_us = tonumber(ARGV[7])
    newly = penalized and 0 or 1
    redis.call('SET', KEYS[2], string.format('%.0f', until_us), 'PX', math.max(1, math.ceil((until_us - now) / 1000)))
  end
  return {0, string.format('%.0f', tat), newly, cost}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, string.format('%.0f', new_tat), 0, cost}
"#;

pub struct RedisStore {
    redis: Redis,
    script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("redis", &self.redis)
            .finish_non_exhaustive()
    }
}

pub struct RedisStep {
    pub step: Step,
    pub newly_penalized: bool,
}

impl RedisStore {
    pub fn new(redis: Redis) -> Self {
        RedisStore {
            redis,
            script: Script::new(SCRIPT),
        }
    }

    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn run(
        &self,
        key: &str,
        penalty_key: &str,
        g: &Gcra,
        now: i64,
        cost: i64,
        penalty_factor: i64,
        strike_until: Option<i64>,
    ) -> Result<RedisStep, RedisError> {
        let bucket = self.redis.key(&format!("rl:{key}"));
        let penalty = self.redis.key(&format!("pen:{penalty_key}"));
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(bucket)
            .key(penalty)
            .arg(now)
            .arg(g.emission_us)
            .arg(g.tolerance_us)
            .arg(cost)
            .arg(penalty_factor)
            .arg(if strike_until.is_some() {
                "strike"
            } else {
                "decide"
            })
            .arg(strike_until.unwrap_or(0));
        let (allowed, tat, newly, charged): (i64, String, i64, i64) = self
            .redis
            .run(|mut conn| async move { invocation.invoke_async(&mut conn).await })
            .await?;
        let tat = tat
            .parse::<i64>()
            .map_err(|_| RedisError::Command("bad TAT from script".into()))?;
        Ok(RedisStep {
            step: Step {
                allowed: allowed == 1,
                tat,
                cost: charged,
            },
            newly_penalized: newly == 1,
        })
    }
}
