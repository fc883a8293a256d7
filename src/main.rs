mod boinc;

fn main() {
    println!("{}", boinc::library_version());
}
