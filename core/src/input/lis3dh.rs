//! ST LIS3DH 3-axis accelerometer over I2C (embedded-hal 1.0, and embedded-hal-async with the
//! `async` feature): a chosen output data rate, +/-2 g, high-resolution (12-bit) mode, block
//! data update. Samples come out in g, one per output period: reading waits for the chip's
//! data-ready flag, so a window fills at the data rate, not at the bus's speed.

use super::SampleSource;
use embedded_hal::delay::DelayNs;
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
/// Normal power, X, Y and Z enabled (CTRL_REG1's low nibble).
const CTRL_REG1_XYZ: u8 = 0x07;
/// Block data update (no torn high/low bytes), +/-2 g, high resolution.
const CTRL_REG4_BDU_2G_HR: u8 = 0x88;
/// ZYXDA: a new X, Y, Z set is available.
const STATUS_ZYXDA: u8 = 0x08;
/// High-resolution mode at +/-2 g: 1 mg per 12-bit digit.
const G_PER_DIGIT: f32 = 0.001;
/// Status polls per output period while waiting for a sample.
const POLLS_PER_PERIOD: u32 = 8;
/// Output periods without a new sample before the sensor counts as stopped.
const PERIODS_BEFORE_NO_DATA: u32 = 4;

/// The output data rates of normal mode (CTRL_REG1's ODR field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DataRate {
    /// 1 Hz.
    Hz1,
    /// 10 Hz.
    Hz10,
    /// 25 Hz.
    Hz25,
    /// 50 Hz.
    Hz50,
    /// 100 Hz.
    Hz100,
    /// 200 Hz.
    Hz200,
    /// 400 Hz.
    Hz400,
}

impl DataRate {
    /// CTRL_REG1: this rate's ODR bits, normal power, X, Y and Z on.
    fn ctrl_reg1(self) -> u8 {
        let odr = match self {
            DataRate::Hz1 => 1,
            DataRate::Hz10 => 2,
            DataRate::Hz25 => 3,
            DataRate::Hz50 => 4,
            DataRate::Hz100 => 5,
            DataRate::Hz200 => 6,
            DataRate::Hz400 => 7,
        };
        (odr << 4) | CTRL_REG1_XYZ
    }

    /// Samples per second.
    pub fn hertz(self) -> u32 {
        match self {
            DataRate::Hz1 => 1,
            DataRate::Hz10 => 10,
            DataRate::Hz25 => 25,
            DataRate::Hz50 => 50,
            DataRate::Hz100 => 100,
            DataRate::Hz200 => 200,
            DataRate::Hz400 => 400,
        }
    }

    /// The wait between two status polls.
    fn poll_interval_us(self) -> u32 {
        1_000_000 / self.hertz() / POLLS_PER_PERIOD
    }
}

/// LIS3DH errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Lis3dhError<E> {
    /// The bus failed.
    Bus(E),
    /// WHO_AM_I answered something other than 0x33: not a LIS3DH, or the wrong address.
    WrongDevice(u8),
    /// No new sample for four output periods: the sensor stopped or was reconfigured.
    NoData,
}

/// The writes that configure the chip at `rate`.
fn configuration(rate: DataRate) -> [[u8; 2]; 2] {
    [
        [CTRL_REG1, rate.ctrl_reg1()],
        [CTRL_REG4, CTRL_REG4_BDU_2G_HR],
    ]
}

/// Acceleration in g from the six output registers: little-endian, left-justified 12 bits.
fn to_g(raw: [u8; 6]) -> [f32; 3] {
    let axis = |i: usize| f32::from(i16::from_le_bytes([raw[2 * i], raw[2 * i + 1]]) >> 4);
    [0, 1, 2].map(|i| axis(i) * G_PER_DIGIT)
}

/// A configured LIS3DH on a blocking bus.
#[derive(Debug)]
pub struct Lis3dh<I2C, D> {
    i2c: I2C,
    delay: D,
    address: u8,
    rate: DataRate,
}

impl<I2C: I2c, D: DelayNs> Lis3dh<I2C, D> {
    /// Checks the chip's identity and configures it (`rate`, +/-2 g, high resolution); `delay`
    /// paces the wait for each sample.
    pub fn new(
        mut i2c: I2C,
        delay: D,
        address: u8,
        rate: DataRate,
    ) -> Result<Self, Lis3dhError<I2C::Error>> {
        let mut id = [0u8];
        i2c.write_read(address, &[WHO_AM_I], &mut id)
            .map_err(Lis3dhError::Bus)?;
        if id[0] != WHO_AM_I_VALUE {
            return Err(Lis3dhError::WrongDevice(id[0]));
        }
        for write in configuration(rate) {
            i2c.write(address, &write).map_err(Lis3dhError::Bus)?;
        }
        Ok(Self {
            i2c,
            delay,
            address,
            rate,
        })
    }

    /// Whether a new sample has arrived since the last read.
    pub fn data_ready(&mut self) -> Result<bool, Lis3dhError<I2C::Error>> {
        let mut status = [0u8];
        self.i2c
            .write_read(self.address, &[STATUS_REG], &mut status)
            .map_err(Lis3dhError::Bus)?;
        Ok(status[0] & STATUS_ZYXDA != 0)
    }

    /// The output registers as they are, in g (they repeat the last sample until a new one).
    pub fn acceleration(&mut self) -> Result<[f32; 3], Lis3dhError<I2C::Error>> {
        let mut raw = [0u8; 6];
        self.i2c
            .write_read(self.address, &[OUT_X_L | AUTO_INCREMENT], &mut raw)
            .map_err(Lis3dhError::Bus)?;
        Ok(to_g(raw))
    }

    /// Waits for the next sample (polling the data-ready flag eight times per output period)
    /// and reads it.
    pub fn next_sample(&mut self) -> Result<[f32; 3], Lis3dhError<I2C::Error>> {
        for _ in 0..POLLS_PER_PERIOD * PERIODS_BEFORE_NO_DATA {
            if self.data_ready()? {
                return self.acceleration();
            }
            self.delay.delay_us(self.rate.poll_interval_us());
        }
        Err(Lis3dhError::NoData)
    }

    /// The bus and the delay, back.
    pub fn release(self) -> (I2C, D) {
        (self.i2c, self.delay)
    }
}

impl<I2C: I2c, D: DelayNs> SampleSource<3> for Lis3dh<I2C, D> {
    type Error = Lis3dhError<I2C::Error>;

    fn read_sample(&mut self) -> Result<[f32; 3], Self::Error> {
        self.next_sample()
    }
}

/// A configured LIS3DH on an async bus: waiting for a sample awaits the delay, so other tasks
/// run meanwhile.
#[cfg(feature = "async")]
#[derive(Debug)]
pub struct Lis3dhAsync<I2C, D> {
    i2c: I2C,
    delay: D,
    address: u8,
    rate: DataRate,
}

#[cfg(feature = "async")]
impl<I2C, D> Lis3dhAsync<I2C, D>
where
    I2C: embedded_hal_async::i2c::I2c,
    D: embedded_hal_async::delay::DelayNs,
{
    /// As [`Lis3dh::new`].
    pub async fn new(
        mut i2c: I2C,
        delay: D,
        address: u8,
        rate: DataRate,
    ) -> Result<Self, Lis3dhError<I2C::Error>> {
        let mut id = [0u8];
        i2c.write_read(address, &[WHO_AM_I], &mut id)
            .await
            .map_err(Lis3dhError::Bus)?;
        if id[0] != WHO_AM_I_VALUE {
            return Err(Lis3dhError::WrongDevice(id[0]));
        }
        for write in configuration(rate) {
            i2c.write(address, &write).await.map_err(Lis3dhError::Bus)?;
        }
        Ok(Self {
            i2c,
            delay,
            address,
            rate,
        })
    }

    /// As [`Lis3dh::next_sample`], awaiting between polls.
    pub async fn next_sample(&mut self) -> Result<[f32; 3], Lis3dhError<I2C::Error>> {
        for _ in 0..POLLS_PER_PERIOD * PERIODS_BEFORE_NO_DATA {
            let mut status = [0u8];
            self.i2c
                .write_read(self.address, &[STATUS_REG], &mut status)
                .await
                .map_err(Lis3dhError::Bus)?;
            if status[0] & STATUS_ZYXDA != 0 {
                let mut raw = [0u8; 6];
                self.i2c
                    .write_read(self.address, &[OUT_X_L | AUTO_INCREMENT], &mut raw)
                    .await
                    .map_err(Lis3dhError::Bus)?;
                return Ok(to_g(raw));
            }
            self.delay.delay_us(self.rate.poll_interval_us()).await;
        }
        Err(Lis3dhError::NoData)
    }
}

#[cfg(feature = "async")]
impl<I2C, D> super::AsyncSampleSource<3> for Lis3dhAsync<I2C, D>
where
    I2C: embedded_hal_async::i2c::I2c,
    D: embedded_hal_async::delay::DelayNs,
{
    type Error = Lis3dhError<I2C::Error>;

    async fn read_sample(&mut self) -> Result<[f32; 3], Self::Error> {
        self.next_sample().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal_mock::eh1::i2c::{Mock, Transaction};

    /// A delay that adds up what it was asked to wait.
    #[derive(Debug, Default)]
    struct Waited(u64);

    impl DelayNs for Waited {
        fn delay_ns(&mut self, ns: u32) {
            self.0 += u64::from(ns);
        }
    }

    fn init_transactions(address: u8, rate: DataRate) -> Vec<Transaction> {
        vec![
            Transaction::write_read(address, vec![0x0F], vec![0x33]),
            Transaction::write(address, vec![0x20, rate.ctrl_reg1()]),
            Transaction::write(address, vec![0x23, 0x88]),
        ]
    }

    /// The status polls and the data read of one sample that arrives after `not_ready` polls.
    fn sample_transactions(address: u8, not_ready: usize, raw: Vec<u8>) -> Vec<Transaction> {
        let mut t = vec![Transaction::write_read(address, vec![0x27], vec![0x00]); not_ready];
        t.push(Transaction::write_read(address, vec![0x27], vec![0x08]));
        t.push(Transaction::write_read(address, vec![0xA8], raw));
        t
    }

    #[test]
    fn configures_the_rate_and_reads_in_g() {
        assert_eq!(DataRate::Hz100.ctrl_reg1(), 0x57);
        assert_eq!(DataRate::Hz1.ctrl_reg1(), 0x17);
        let mut expect = init_transactions(ADDRESS_SA0_LOW, DataRate::Hz100);
        // x = +1000 mg (0x3E80 = 16000 >> 4 = 1000), y = -500 mg, z = 0.
        let y = (-500i16 << 4).to_le_bytes();
        expect.extend(sample_transactions(
            0x18,
            0,
            vec![0x80, 0x3E, y[0], y[1], 0, 0],
        ));
        let mut i2c = Mock::new(&expect);
        let mut sensor = Lis3dh::new(
            i2c.clone(),
            Waited::default(),
            ADDRESS_SA0_LOW,
            DataRate::Hz100,
        )
        .unwrap();
        let [x, y, z] = sensor.read_sample().unwrap();
        assert!(
            (x - 1.0).abs() < 1e-6 && (y + 0.5).abs() < 1e-6 && z == 0.0,
            "{x} {y} {z}"
        );
        i2c.done();
    }

    /// The mock answers each transaction once, in order, and `done` checks none is left over:
    /// so a sample costs exactly its status polls and one data read, and the waits between
    /// polls add up to the time the data took to arrive.
    #[test]
    fn each_sample_waits_for_data_ready() {
        let rate = DataRate::Hz50; // 20 ms per sample, polled every 2.5 ms
        let mut expect = init_transactions(0x18, rate);
        for not_ready in [3, 0, 7] {
            expect.extend(sample_transactions(
                0x18,
                not_ready,
                vec![0x10, 0, 0, 0, 0, 0],
            ));
        }
        let mut i2c = Mock::new(&expect);
        let mut sensor = Lis3dh::new(i2c.clone(), Waited::default(), 0x18, rate).unwrap();
        for _ in 0..3 {
            assert_eq!(sensor.read_sample().unwrap()[0], 0.001);
        }
        let (_, waited) = sensor.release();
        assert_eq!(waited.0, 10 * 2_500_000, "ten polls found no data");
        i2c.done();
    }

    #[test]
    fn a_stopped_sensor_is_an_error_not_a_hang() {
        let rate = DataRate::Hz400;
        let mut expect = init_transactions(0x18, rate);
        let polls = (POLLS_PER_PERIOD * PERIODS_BEFORE_NO_DATA) as usize;
        expect.extend(vec![
            Transaction::write_read(0x18, vec![0x27], vec![0x00]);
            polls
        ]);
        let mut i2c = Mock::new(&expect);
        let mut sensor = Lis3dh::new(i2c.clone(), Waited::default(), 0x18, rate).unwrap();
        assert_eq!(sensor.read_sample(), Err(Lis3dhError::NoData));
        i2c.done();
    }

    #[test]
    fn a_different_chip_is_refused() {
        let expect = [Transaction::write_read(0x19, vec![0x0F], vec![0x6A])];
        let mut i2c = Mock::new(&expect);
        assert_eq!(
            Lis3dh::new(
                i2c.clone(),
                Waited::default(),
                ADDRESS_SA0_HIGH,
                DataRate::Hz10
            )
            .err(),
            Some(Lis3dhError::WrongDevice(0x6A))
        );
        i2c.done();
    }

    #[test]
    fn streams_through_a_sliding_window() {
        use crate::input::{InputQuantization, InputSource, SlidingWindow};
        let mut expect = init_transactions(0x18, DataRate::Hz100);
        for k in 1..=3i16 {
            let v = ((k * 100) << 4).to_le_bytes(); // k * 100 mg on every axis
            expect.extend(sample_transactions(0x18, 1, [v, v, v].concat()));
        }
        let mut i2c = Mock::new(&expect);
        let sensor = Lis3dh::new(i2c.clone(), Waited::default(), 0x18, DataRate::Hz100).unwrap();
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

    #[cfg(feature = "async")]
    #[test]
    fn the_async_driver_paces_itself_the_same_way() {
        use embedded_hal_mock::eh1::i2c::Mock as AsyncMock;
        let rate = DataRate::Hz10;
        let mut expect = init_transactions(0x18, rate);
        expect.extend(sample_transactions(0x18, 2, vec![0, 0, 0x80, 0x3E, 0, 0]));
        let mut i2c = AsyncMock::new(&expect);
        let mut waited = AsyncWaited(0);
        let sample = crate::test_support::block_on(async {
            let mut sensor = Lis3dhAsync::new(i2c.clone(), &mut waited, 0x18, rate).await?;
            crate::input::AsyncSampleSource::read_sample(&mut sensor).await
        });
        assert_eq!(sample, Ok([0.0, 1.0, 0.0]));
        assert_eq!(waited.0, 2 * 12_500_000);
        i2c.done();
    }

    #[cfg(feature = "async")]
    struct AsyncWaited(u64);

    #[cfg(feature = "async")]
    impl embedded_hal_async::delay::DelayNs for AsyncWaited {
        async fn delay_ns(&mut self, ns: u32) {
            self.0 += u64::from(ns);
        }
    }
}
