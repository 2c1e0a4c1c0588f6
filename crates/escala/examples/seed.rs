//! The seed program ("An Introduction to Scaling Distributed Python Applications"), unit for
//! unit, with escala: a thread, a process, a daemon thread and a pool of three futures.
//!
//! Run it with `cargo run --example seed`.

use std::time::Duration;

// Función para ejecutar en un hilo
fn thread_function(name: &str) {
    println!("Hilo: {name} iniciado.");
    std::thread::sleep(Duration::from_secs(2));
    println!("Hilo: {name} finalizado.");
}

// Función para ejecutar en un proceso
#[escala::task]
fn process_function(name: String) {
    println!("Proceso: {name} iniciado.");
    std::thread::sleep(Duration::from_secs(2));
    println!("Proceso: {name} finalizado.");
}

#[escala::main] // non-daemon units are joined when main returns, as in Python
fn main() {
    // Crear un hilo
    let _thread = escala::thread::spawn("Hilo 1", || thread_function("Hilo 1"));

    // Crear un proceso
    let _process = escala::process::spawn(process_function::call("Proceso 1".into()));

    // Crear un demonio
    let _daemon = escala::thread::spawn_daemon("Demonio 1", || thread_function("Demonio 1"));

    // Utilizar un pool para concurrencia (Python's default pool has more than 3 workers)
    let executor = escala::ThreadPool::new(3);
    let futures: Vec<_> =
        (0..3).map(|i| executor.submit(move || thread_function(&format!("Concurrencia {i}")))).collect();
    for future in escala::as_completed(futures) {
        println!("Concurrencia: {:?} finalizada.", future.join().unwrap());
    }
}
