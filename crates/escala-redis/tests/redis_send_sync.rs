//! Compile-time table: which public types of escala-redis cross threads.

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<escala_redis::RedisExecutor>();
    send_sync::<escala_redis::RedisExecutorBuilder>();
    send_sync::<escala_redis::WorkerBuilder>();
    send_sync::<escala_redis::RunningWorker>();
    send_sync::<escala_redis::WorkerReport>();
    send_sync::<escala_redis::Status>();
    send_sync::<escala_redis::CommandOutput>();
    send_sync::<escala_redis::Error>();
    send::<escala::remote::RemoteCompleter<String>>();
}
