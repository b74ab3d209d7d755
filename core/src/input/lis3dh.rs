//! ST LIS3DH 3-axis accelerometer over I2C (embedded-hal 1.0): 100 Hz, +/-2 g, high-resolution
//! (12-bit) mode, block data update. Samples come out in g.

use super::SampleSource;
use embedded_hal::i2c::I2c;

/// I2C address with SA0 tied low; 0x19 with SA0 high.
pub const ADDRESS_SA0_LOW: u8 = 0x18;
/// I2C address with SA0 tied high.
pub const ADDRESS_SA0_HIGH: u8 = 0x19;

const WHO_AM_I: u8 = 0x0F;
const WHO_AM_I_VALUE: u8 = 0x33;
const CTRL_REG1: u8 = 0x20;
const CTRL_REG4: u8 = 0x23;
const STATUS_REG: u8 = 0x27;
const OUT_X_L: u8 = 0x28;
/// Setting the sub-address's top bit makes the LIS3DH auto-increment across registers.
const AUTO_INCREMENT: u8 = 0x80;
/// 100 Hz output data rate, normal power, X, Y and Z enabled.
const CTRL_REG1_100HZ_XYZ: u8 = 0x57;
/// Block data update (no torn high/low bytes), +/-2 g, high resolution.
const CTRL_REG4_BDU_2G_HR: u8 = 0x88;
/// ZYXDA: a new X, Y, Z set is available.
const STATUS_ZYXDA: u8 = 0x08;
/// High-resolution mode at +/-2 g: 1 mg per 12-bit digit.
const G_PER_DIGIT: f32 = 0.001;

/// LIS3DH errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Lis3dhError<E> {
    /// The bus failed.
    Bus(E),
    /// WHO_AM_I answered something other than 0x33: not a LIS3DH, or the wrong address.
    WrongDevice(u8),
}

/// A configured LIS3DH.
#[derive(Debug)]
pub struct Lis3dh<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C: I2c> Lis3dh<I2C> {
    /// Checks the chip's identity and configures it (100 Hz, +/-2 g, high resolution).
    pub fn new(mut i2c: I2C, address: u8) -> Result<Self, Lis3dhError<I2C::Error>> {
        let mut id = [0u8];
        i2c.write_read(address, &[WHO_AM_I], &mut id)
            .map_err(Lis3dhError::Bus)?;
        if id[0] != WHO_AM_I_VALUE {
            return Err(Lis3dhError::WrongDevice(id[0]));
        }
        i2c.write(address, &[CTRL_REG1, CTRL_REG1_100HZ_XYZ])
            .map_err(Lis3dhError::Bus)?;
        i2c.write(address, &[CTRL_REG4, CTRL_REG4_BDU_2G_HR])
            .map_err(Lis3dhError::Bus)?;
        Ok(Self { i2c, address })
    }

    /// Whether a new sample has arrived since the last read.
    pub fn data_ready(&mut self) -> Result<bool, Lis3dhError<I2C::Error>> {
        let mut status = [0u8];
        self.i2c
            .write_read(self.address, &[STATUS_REG], &mut status)
            .map_err(Lis3dhError::Bus)?;
        Ok(status[0] & STATUS_ZYXDA != 0)
    }

    /// The current acceleration, in g.
    pub fn acceleration(&mut self) -> Result<[f32; 3], Lis3dhError<I2C::Error>> {
        let mut raw = [0u8; 6];
        self.i2c
            .write_read(self.address, &[OUT_X_L | AUTO_INCREMENT], &mut raw)
            .map_err(Lis3dhError::Bus)?;
        // Little-endian, left-justified 12-bit values.
        let axis = |i: usize| f32::from(i16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]) >> 4);
        Ok([0, 1, 2].map(|i| axis(i) * G_PER_DIGIT))
    }

    /// The bus, back.
    pub fn release(self) -> I2C {
        self.i2c
    }
}

impl<I2C: I2c> SampleSource<3> for Lis3dh<I2C> {
    type Error = Lis3dhError<I2C::Error>;

    fn read_sample(&mut self) -> Result<[f32; 3], Self::Error> {
        self.acceleration()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};

    fn init_transactions(address: u8) -> Vec<Transaction> {
        vec![
            Transaction::write_read(address, vec![0x0F], vec![0x33]),
            Transaction::write(address, vec![0x20, 0x57]),
            Transaction::write(address, vec![0x23, 0x88]),
        ]
    }

    #[test]
    fn configures_and_reads_in_g() {
        let mut expect = init_transactions(ADDRESS_SA0_LOW);
        expect.push(Transaction::write_read(0x18, vec![0x27], vec![0x08]));
        // x = +1000 mg (0x3E80 = 16000 >> 4 = 1000), y = -500 mg, z = 0.
        let y = (-500i16 << 4).to_le_bytes();
        expect.push(Transaction::write_read(
            0x18,
            vec![0xA8],
            vec![0x80, 0x3E, y[0], y[1], 0, 0],
        ));
        let mut i2c = Mock::new(&expect);
        let mut sensor = Lis3dh::new(i2c.clone(), ADDRESS_SA0_LOW).unwrap();
        assert!(sensor.data_ready().unwrap());
        let [x, y, z] = sensor.read_sample().unwrap();
        assert!(
            (x - 1.0).abs() < 1e-6 && (y + 0.5).abs() < 1e-6 && z == 0.0,
            "{x} {y} {z}"
        );
        i2c.done();
    }

    #[test]
    fn a_different_chip_is_refused() {
        let expect = [Transaction::write_read(0x19, vec![0x0F], vec![0x6A])];
        let mut i2c = Mock::new(&expect);
        assert_eq!(
            Lis3dh::new(i2c.clone(), ADDRESS_SA0_HIGH).err(),
            Some(Lis3dhError::WrongDevice(0x6A))
        );
        i2c.done();
    }

    #[test]
    fn streams_through_a_sliding_window() {
        use crate::input::{InputQuantization, InputSource, SlidingWindow};
        let mut expect = init_transactions(0x18);
        for k in 1..=3i16 {
            let v = ((k * 100) << 4).to_le_bytes(); // k * 100 mg on every axis
            expect.push(Transaction::write_read(
                0x18,
                vec![0xA8],
                [v, v, v].concat(),
            ));
        }
        let mut i2c = Mock::new(&expect);
        let sensor = Lis3dh::new(i2c.clone(), 0x18).unwrap();
        let q = InputQuantization {
            mean: [0.0; 3],
            std: [1.0; 3],
            scale: 0.01,
            zero_point: 0,
        };
        let mut window: SlidingWindow<_, 3, 3> = SlidingWindow::new(sensor, 3, q);
        let mut x = [0i8; 9];
        window.next_input(&mut x).unwrap();
        assert_eq!(x, [10, 10, 10, 20, 20, 20, 30, 30, 30]);
        i2c.done();
    }
}
